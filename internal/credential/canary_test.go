package credential_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"warden"
	"warden/internal/credential"
)

// Canary secrets: every output of every path is searched for them.
const (
	canaryToken   = "CANARY-token-7f3a91"
	canaryPass    = "CANARY-pass-c0ffee"
	canaryHeader  = "CANARY-header-b00b5"
	canaryClient  = "CANARY-client-secret-d34d"
	canaryRefresh = "CANARY-refresh-e1e1"
	canaryAccess  = "CANARY-access-f00d"
	canaryAdminPW = "CANARY-admin-pw-9999"
)

var canaries = []string{canaryToken, canaryPass, canaryHeader, canaryClient, canaryRefresh, canaryAccess, canaryAdminPW}

// sink collects every output a test produces.
type sink struct{ strings.Builder }

func (s *sink) add(vs ...any) {
	for _, v := range vs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			fmt.Fprintf(s, verb+"\n", v)
		}
		if b, err := json.Marshal(v); err == nil {
			s.Write(b)
		}
		if err, ok := v.(error); ok && err != nil {
			s.WriteString(err.Error())
		}
	}
}

func (s *sink) check(t *testing.T, logs string) {
	t.Helper()
	all := s.String() + logs
	for _, c := range canaries {
		if strings.Contains(all, c) {
			i := strings.Index(all, c)
			t.Fatalf("secret %q leaked: ...%s...", c, all[max(0, i-200):min(len(all), i+60)])
		}
	}
}

func TestCanarySecretsNeverLeak(t *testing.T) {
	ts := newTokenServer(t)
	ts.rotateRT = true
	ts.setAnswer(func(n int, form map[string]string) (int, string) {
		if n == 0 {
			b, _ := json.Marshal(map[string]any{"access_token": canaryAccess, "token_type": "Bearer", "expires_in": 600, "refresh_token": canaryRefresh + "-2"})
			return 200, string(b)
		}
		// Then a provider that echoes what it received in its errors.
		return 400, `{"error":"invalid_grant","error_description":"bad token ` + form["refresh_token"] + ` / ` + canaryAccess + `"}`
	})
	e := oauthEnv(t, ts)
	var out sink
	ins := []credential.CreateInput{
		{Name: "bearer", Type: "bearer", Connector: "b", Secret: map[string]string{"token": canaryToken}},
		{Name: "basic", Type: "basic", Connector: "ba", Secret: map[string]string{"username": "u", "password": canaryPass}},
		{Name: "header", Type: "header", Connector: "h", Secret: map[string]string{"name": "X-Api-Key", "value": canaryHeader}},
		{Name: "query", Type: "query", Connector: "q", Secret: map[string]string{"name": "key", "value": canaryHeader}},
		{Name: "cc", Type: credential.TypeOAuth2ClientCredentials, Connector: "cc", Secret: map[string]string{"client_id": "id", "client_secret": canaryClient},
			Config: map[string]any{"token_url": ts.URL + "/token", "allow_private_network": true}},
		{Name: "rt", Type: credential.TypeOAuth2RefreshToken, Connector: "rt", Secret: map[string]string{"refresh_token": canaryRefresh, "client_id": "id", "client_secret": canaryClient},
			Config: map[string]any{"token_url": ts.URL + "/token", "allow_private_network": true}},
		{Name: "pg", Type: credential.TypePostgresDynamic, Connector: "pg", Secret: map[string]string{"admin_dsn": "postgres://postgres:" + canaryAdminPW + "@127.0.0.1:1/test?connect_timeout=2"},
			Config: map[string]any{"grants": []any{"GRANT SELECT ON t TO {{role}}"}}},
	}
	for _, in := range ins {
		c, err := e.svc.Create(ctx, admin, in)
		out.add(c, err)
	}
	// Bad inputs that carry secrets: their errors must not echo them.
	for _, in := range []credential.CreateInput{
		{Name: "bad1", Type: "bearer", Connector: "x", Secret: map[string]string{"token": canaryToken, "extra": canaryPass}},
		{Name: "bad2", Type: "bearer", Connector: "x", Secret: map[string]string{"token": canaryToken + "\n"}},
		{Name: "bad3", Type: "nope", Connector: "x", Secret: map[string]string{"token": canaryToken}},
		{Name: "bad4", Type: "bearer", Connector: "x", Secret: map[string]string{"token": "t"}, Config: map[string]any{"url": "https://u:" + canaryPass + "@h/"}},
		{Name: "bad5", Type: credential.TypePostgresDynamic, Connector: "x", Secret: map[string]string{"admin_dsn": "postgres://u:" + canaryAdminPW + "@h:notaport/db"},
			Config: map[string]any{"grants": []any{"GRANT x TO {{role}}"}}},
		{Name: "bad", Type: "bearer", Connector: "b", Secret: map[string]string{"token": canaryToken}}, // conflict
		{Name: "bearer", Type: "bearer", Connector: "other", Secret: map[string]string{"token": canaryToken}},
	} {
		_, err := e.svc.Create(ctx, admin, in)
		if err == nil {
			t.Fatalf("%s accepted", in.Name)
		}
		out.add(err)
	}
	for _, conn := range []string{"b", "ba", "h", "q", "cc", "rt", "pg", "none"} {
		m, err := e.svc.Resolve(ctx, conn, "nhi_a")
		out.add(m, err)
		if m != nil {
			for _, f := range m.Fields {
				out.add(f)
			}
		}
		l, err := e.svc.Lease(ctx, conn, "nhi_a")
		out.add(l, err)
	}
	// OAuth failure paths: the provider now echoes secrets in its error.
	e.clock.Add(time.Hour)
	for _, conn := range []string{"cc", "rt"} {
		m, err := e.svc.Resolve(ctx, conn, "nhi_a")
		out.add(m, err)
	}
	out.add(e.svc.Sweep(ctx))
	// Rotation, versions, lists, metadata patches, deletes.
	c, err := e.svc.Rotate(ctx, admin, "bearer", map[string]string{"token": canaryToken + "-v2"})
	out.add(c, err)
	_, err = e.svc.Rotate(ctx, admin, "bearer", map[string]string{"token": canaryToken + "\r\n"})
	out.add(err)
	vs, err := e.svc.Versions(ctx, admin, "bearer")
	out.add(vs, err)
	list, err := e.svc.List(ctx, admin, "")
	out.add(list, err)
	for _, c := range list {
		out.add(*c)
	}
	over, err := e.svc.ListOverdue(ctx, admin)
	out.add(over, err)
	g, err := e.svc.Get(ctx, admin, "rt")
	out.add(g, err)
	leases, err := e.svc.ListLeases(ctx, admin, credential.LeaseFilter{})
	out.add(leases, err)
	out.add(e.svc.Delete(ctx, admin, "pg"))
	out.add(e.svc.Delete(ctx, admin, "basic"))
	// Logs of every kind.
	slog.New(slog.NewTextHandler(&out, nil)).Info("material", "m", warden.NewSecret(canaryToken))
	out.check(t, e.logs.String())

	// The canaries did reach the places they must reach: the test would
	// pass vacuously otherwise.
	if m, err := e.svc.Resolve(ctx, "b", "nhi_a"); err != nil || m.Fields["token"].Reveal() != canaryToken+"-v2" {
		t.Fatalf("canary not injectable: %v", err)
	}
	if !strings.Contains(e.logs.String(), "oauth token") && !strings.Contains(e.logs.String(), "dynamic PostgreSQL") {
		t.Fatal("failure paths did not log: the log check proved nothing")
	}
}
