package credential_test

import (
	"strings"
	"testing"
	"time"

	"warden"
	"warden/internal/credential"
)

func TestResolveBindingOrder(t *testing.T) {
	e := newEnv(t, nil)
	e.create(t, credential.CreateInput{Name: "gh-default", Type: credential.TypeBearer, Connector: "github", Secret: map[string]string{"token": "default-token"}})
	e.create(t, credential.CreateInput{Name: "gh-agent-a", Type: credential.TypeBearer, Connector: "github", Identity: "nhi_a", Secret: map[string]string{"token": "a-token"}})

	m, err := e.svc.Resolve(ctx, "github", "nhi_a")
	if err != nil || m.Fields["token"].Reveal() != "a-token" || m.Name != "gh-agent-a" {
		t.Fatalf("identity binding: %v %+v", err, m)
	}
	m, err = e.svc.Resolve(ctx, "github", "nhi_b")
	if err != nil || m.Fields["token"].Reveal() != "default-token" {
		t.Fatalf("connector default: %v", err)
	}
	_, err = e.svc.Resolve(ctx, "gitlab", "nhi_a")
	wantCode(t, err, warden.CodeNoCredential)

	// Deleting the identity's binding falls back to the default at once.
	if err := e.svc.Delete(ctx, admin, "gh-agent-a"); err != nil {
		t.Fatal(err)
	}
	m, err = e.svc.Resolve(ctx, "github", "nhi_a")
	if err != nil || m.Fields["token"].Reveal() != "default-token" {
		t.Fatalf("after delete: %v", err)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name  string
		in    credential.CreateInput
		field string
	}{
		{"missing field", credential.CreateInput{Name: "x", Type: "basic", Connector: "c", Secret: map[string]string{"username": "u"}}, "secret.password"},
		{"unknown type", credential.CreateInput{Name: "x", Type: "kerberos", Connector: "c", Secret: map[string]string{"token": "t"}}, "type"},
		{"extra field", credential.CreateInput{Name: "x", Type: "bearer", Connector: "c", Secret: map[string]string{"token": "t", "other": "o"}}, "secret.other"},
		{"password in config URL", credential.CreateInput{Name: "x", Type: "bearer", Connector: "c", Secret: map[string]string{"token": "t"},
			Config: map[string]any{"endpoint": "https://user:hunter2@example.com/"}}, "config.endpoint"},
		{"oauth without token_url", credential.CreateInput{Name: "x", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
			Secret: map[string]string{"client_id": "id", "client_secret": "s"}}, "config.token_url"},
		{"oauth http token_url", credential.CreateInput{Name: "x", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
			Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": "http://auth.example.com/token"}}, "config.token_url"},
		{"oauth unknown config", credential.CreateInput{Name: "x", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
			Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": "https://a.example/t", "scope": "x"}}, "config.scope"},
		{"oauth bad scope", credential.CreateInput{Name: "x", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
			Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": "https://a.example/t", "scopes": []any{"a\"b"}}}, "config.scopes"},
		{"refresh secret without id", credential.CreateInput{Name: "x", Type: credential.TypeOAuth2RefreshToken, Connector: "c",
			Secret: map[string]string{"refresh_token": "r", "client_secret": "s"}, Config: map[string]any{"token_url": "https://a.example/t"}}, "secret.client_id"},
		{"pg without grants", credential.CreateInput{Name: "x", Type: credential.TypePostgresDynamic, Connector: "c",
			Secret: map[string]string{"admin_dsn": "postgres://a@h/db"}}, "config.grants"},
		{"pg grant without placeholder", credential.CreateInput{Name: "x", Type: credential.TypePostgresDynamic, Connector: "c",
			Secret: map[string]string{"admin_dsn": "postgres://a@h/db"}, Config: map[string]any{"grants": []any{"GRANT SELECT ON t TO public"}}}, "config.grants[0]"},
		{"pg bad ttl", credential.CreateInput{Name: "x", Type: credential.TypePostgresDynamic, Connector: "c",
			Secret: map[string]string{"admin_dsn": "postgres://a@h/db"}, Config: map[string]any{"grants": []any{"GRANT x TO {{role}}"}, "ttl": "5s"}}, "config.ttl"},
		{"pg bad dsn", credential.CreateInput{Name: "x", Type: credential.TypePostgresDynamic, Connector: "c",
			Secret: map[string]string{"admin_dsn": "mysql://a@h/db"}, Config: map[string]any{"grants": []any{"GRANT x TO {{role}}"}}}, "secret.admin_dsn"},
		{"header injection", credential.CreateInput{Name: "x", Type: "bearer", Connector: "c", Secret: map[string]string{"token": "a\r\nX-Evil: 1"}}, "secret.token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Create(ctx, admin, tc.in)
			var we *warden.Error
			if !asErr(err, &we) || we.Code != warden.CodeInvalid || we.Field != tc.field {
				t.Fatalf("want invalid %s, got %v", tc.field, err)
			}
		})
	}
	all, _ := e.svc.List(ctx, admin, "")
	if len(all) != 0 {
		t.Fatalf("rejected input stored %d credentials", len(all))
	}
	// Dev mode (or allow_private_network) admits a plain-http token URL.
	dev := newEnv(t, func(o *credential.Options) { o.Dev = true })
	dev.create(t, credential.CreateInput{Name: "x", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
		Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": "http://127.0.0.1:9/token"}})
	e.create(t, credential.CreateInput{Name: "y", Type: credential.TypeOAuth2ClientCredentials, Connector: "c",
		Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": "http://127.0.0.1:9/token", "allow_private_network": true}})
}

func TestPermissions(t *testing.T) {
	e := newEnv(t, nil)
	auditor := warden.Principal{Kind: warden.PrincipalAdmin, ID: "a", Roles: []string{warden.RoleAuditor}}
	agent := warden.Principal{Kind: warden.PrincipalIdentity, ID: "nhi_x"}
	_, err := e.svc.Create(ctx, auditor, credential.CreateInput{Name: "x", Type: "bearer", Connector: "c", Secret: map[string]string{"token": "t"}})
	wantCode(t, err, warden.CodeForbidden)
	e.create(t, credential.CreateInput{Name: "x", Type: "bearer", Connector: "c", Secret: map[string]string{"token": "t"}})
	if _, err := e.svc.Get(ctx, auditor, "x"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Get(ctx, agent, "x")
	wantCode(t, err, warden.CodeForbidden)
	_, err = e.svc.Rotate(ctx, auditor, "x", map[string]string{"token": "u"})
	wantCode(t, err, warden.CodeForbidden)
	_, err = e.svc.ListLeases(ctx, agent, credential.LeaseFilter{})
	wantCode(t, err, warden.CodeForbidden)
	_, err = e.svc.RevokeLease(ctx, auditor, "lease_x")
	wantCode(t, err, warden.CodeForbidden)
}

func TestTamperedCiphertextRefused(t *testing.T) {
	e := newEnv(t, nil)
	a := e.create(t, credential.CreateInput{Name: "a", Type: "bearer", Connector: "one", Secret: map[string]string{"token": "token-a"}})
	b := e.create(t, credential.CreateInput{Name: "b", Type: "bearer", Connector: "two", Secret: map[string]string{"token": "token-b"}})
	// Copy a's ciphertext over b's: it is bound to a's id and must not open.
	if _, err := e.st.DB().Exec(`UPDATE credential_versions SET ciphertext = (SELECT ciphertext FROM credential_versions WHERE credential_id = ?) WHERE credential_id = ?`, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Resolve(ctx, "two", "nhi_x")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	// Flip a byte of a's ciphertext.
	if _, err := e.st.DB().Exec(`UPDATE credential_versions SET ciphertext = substr(ciphertext, 1, length(ciphertext) - 1) || X'00' WHERE credential_id = ?`, a.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Resolve(ctx, "one", "nhi_x")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	if !strings.Contains(e.logs.String(), "credential ciphertext does not open") {
		t.Fatal("tampering not logged")
	}
}

func TestRotationGraceAndRetirement(t *testing.T) {
	e := newEnv(t, func(o *credential.Options) { o.RotationGrace = time.Hour })
	e.create(t, credential.CreateInput{Name: "gh", Type: "bearer", Connector: "github", Rotation: 30 * 24 * time.Hour, Secret: map[string]string{"token": "v1-token"}})
	if m, _ := e.svc.Resolve(ctx, "github", "nhi_a"); m.Fields["token"].Reveal() != "v1-token" {
		t.Fatal("v1 not served")
	}
	over, err := e.svc.ListOverdue(ctx, admin)
	if err != nil || len(over) != 0 {
		t.Fatalf("overdue too early: %v %d", err, len(over))
	}
	e.clock.Add(31 * 24 * time.Hour)
	over, _ = e.svc.ListOverdue(ctx, admin)
	if len(over) != 1 || over[0].Name != "gh" {
		t.Fatalf("want gh overdue, got %v", over)
	}
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "credential rotation overdue") {
		t.Fatal("overdue static credential not reported")
	}

	c, err := e.svc.Rotate(ctx, admin, "gh", map[string]string{"token": "v2-token"})
	if err != nil || c.Version != 2 {
		t.Fatalf("rotate: %v", err)
	}
	// The new version is served from the next call.
	if m, _ := e.svc.Resolve(ctx, "github", "nhi_a"); m.Fields["token"].Reveal() != "v2-token" || m.Version != 2 {
		t.Fatal("v2 not served after rotation")
	}
	over, _ = e.svc.ListOverdue(ctx, admin)
	if len(over) != 0 {
		t.Fatal("still overdue after rotation")
	}
	vs, err := e.svc.Versions(ctx, admin, "gh")
	if err != nil || len(vs) != 2 || vs[0].State != "previous" || vs[1].State != "current" || vs[0].RetireAt == nil || !vs[0].RetireAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("versions after rotation: %v %+v", err, vs)
	}
	// Within the grace the previous version still opens (replicas whose
	// cache predates the rotation may still inject it).
	if _, err := e.st.SealedVersion(ctx, c.ID, 1); err != nil {
		t.Fatalf("previous version gone inside grace: %v", err)
	}
	e.clock.Add(59 * time.Minute)
	_ = e.svc.Sweep(ctx)
	if _, err := e.st.SealedVersion(ctx, c.ID, 1); err != nil {
		t.Fatalf("previous version retired before its grace ended: %v", err)
	}
	e.clock.Add(time.Minute)
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = e.st.SealedVersion(ctx, c.ID, 1)
	wantCode(t, err, warden.CodeNotFound)
	var n int
	if err := e.st.DB().QueryRow(`SELECT length(ciphertext) FROM credential_versions WHERE credential_id = ? AND version = 1`, c.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("retired ciphertext still stored: %d bytes, %v", n, err)
	}
	vs, _ = e.svc.Versions(ctx, admin, "gh")
	if vs[0].State != "retired" || vs[1].State != "current" {
		t.Fatalf("versions after grace: %+v", vs)
	}
	if m, err := e.svc.Resolve(ctx, "github", "nhi_b"); err != nil || m.Fields["token"].Reveal() != "v2-token" {
		t.Fatal("current version affected by retirement")
	}

	// A per-credential grace overrides the default.
	g := 10 * time.Minute
	if _, err := e.svc.Update(ctx, admin, "gh", credential.Patch{RotationGrace: &g}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Rotate(ctx, admin, "gh", map[string]string{"token": "v3-token"}); err != nil {
		t.Fatal(err)
	}
	vs, _ = e.svc.Versions(ctx, admin, "gh")
	if vs[1].RetireAt == nil || !vs[1].RetireAt.Equal(e.clock.Now().Add(g)) {
		t.Fatalf("per-credential grace not applied: %+v", vs[1])
	}
}

func TestCacheBoundedAndDroppedOnSuspension(t *testing.T) {
	e := newEnv(t, func(o *credential.Options) { o.CacheTTL = time.Minute })
	c := e.create(t, credential.CreateInput{Name: "gh", Type: "bearer", Connector: "github", Secret: map[string]string{"token": "v1"}})
	if _, err := e.svc.Resolve(ctx, "github", "nhi_a"); err != nil {
		t.Fatal(err)
	}
	// Change the secret behind the service's back (as another replica
	// would): the cache serves v1 until its TTL, then reads v2.
	e2 := credential.New(credential.Options{Store: e.st, Sealer: e.keys, Now: e.clock.Now})
	if _, err := e2.Rotate(ctx, admin, "gh", map[string]string{"token": "v2"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := e.svc.Resolve(ctx, "github", "nhi_a"); m.Fields["token"].Reveal() != "v1" {
		t.Fatal("cache not used within TTL")
	}
	e.clock.Add(time.Minute)
	if m, _ := e.svc.Resolve(ctx, "github", "nhi_a"); m.Fields["token"].Reveal() != "v2" {
		t.Fatal("cache outlived its TTL")
	}
	// Suspension drops the identity's entries at once: a later delete by
	// another replica is seen on the next call.
	if err := e2.Delete(ctx, admin, "gh"); err != nil {
		t.Fatal(err)
	}
	e.svc.IdentityChanged("nhi_a", false)
	_, err := e.svc.Resolve(ctx, "github", "nhi_a")
	wantCode(t, err, warden.CodeNoCredential)
	_ = c
}

func TestExpiredCredentialIsNoCredential(t *testing.T) {
	e := newEnv(t, nil)
	exp := e.clock.Now().Add(time.Hour)
	e.create(t, credential.CreateInput{Name: "gh", Type: "bearer", Connector: "github", ExpiresAt: &exp, Secret: map[string]string{"token": "t"}})
	if _, err := e.svc.Resolve(ctx, "github", "nhi_a"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Hour)
	_, err := e.svc.Resolve(ctx, "github", "nhi_a")
	wantCode(t, err, warden.CodeNoCredential)
}
