package authn_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"warden"
	"warden/internal/authn"
	"warden/internal/identity"
	"warden/internal/seal"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var root = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}

type fixture struct {
	st    *store.Store
	kr    *seal.Keyring
	ids   *identity.Service
	auth  *authn.Service
	clock *time.Time
}

func newFixture(t testing.TB, st *store.Store) *fixture {
	t.Helper()
	kr, err := seal.Open(ctx, seal.GenerateMasterKey(), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kr.Close)
	now := time.Now()
	f := &fixture{st: st, kr: kr, clock: &now}
	f.ids = identity.New(identity.Options{Store: st, OnChange: func(id *identity.Identity) { f.auth.IdentityChanged(id) }})
	f.auth = authn.New(authn.Options{Store: st, Keys: kr, Identities: f.ids, RootToken: warden.NewSecret("root-token-0123456789"), Now: func() time.Time { return *f.clock }})
	if err := f.auth.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) agent(t testing.TB, name string) (*identity.Identity, string) {
	t.Helper()
	id, err := f.ids.Create(ctx, root, identity.CreateInput{Name: name, Type: identity.TypeAIAgent, Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := f.auth.CreateKey(ctx, root, id.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return id, key.Reveal()
}

func wantCode(t *testing.T, err error, code warden.Code) {
	t.Helper()
	if !warden.IsCode(err, code) {
		t.Fatalf("got %v (code %q), want code %q", err, warden.ErrorCode(err), code)
	}
}

func TestKeyTokenLifecycle(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		id, key := f.agent(t, "bot-1")

		p, err := f.auth.Authenticate(ctx, key)
		if err != nil || p.ID != id.ID || p.Kind != warden.PrincipalIdentity {
			t.Fatalf("key auth: %+v %v", p, err)
		}
		tok, err := f.auth.IssueToken(ctx, "bot-1", key)
		if err != nil {
			t.Fatal(err)
		}
		raw := tok.AccessToken.Reveal()
		if p, err := f.auth.Authenticate(ctx, raw); err != nil || p.ID != id.ID {
			t.Fatalf("token auth: %v", err)
		}
		// Wrong client_id.
		_, err = f.auth.IssueToken(ctx, "someone-else", key)
		wantCode(t, err, warden.CodeUnauthenticated)

		// Suspension takes effect on the very next request, cached or not.
		if _, err := f.ids.Suspend(ctx, root, id.ID, "probe"); err != nil {
			t.Fatal(err)
		}
		_, err = f.auth.Authenticate(ctx, raw)
		wantCode(t, err, warden.CodeIdentitySuspended)
		_, err = f.auth.Authenticate(ctx, key)
		wantCode(t, err, warden.CodeIdentitySuspended)
		_, err = f.auth.IssueToken(ctx, "", key)
		wantCode(t, err, warden.CodeIdentitySuspended)
		if _, err := f.ids.Resume(ctx, root, id.ID, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.auth.Authenticate(ctx, raw); err != nil {
			t.Fatalf("after resume: %v", err)
		}

		// Revoking the key kills the key and the tokens issued from it.
		keys, _ := f.auth.ListKeys(ctx, root, id.ID)
		if err := f.auth.RevokeKey(ctx, root, id.Name, keys[0].ID); err != nil {
			t.Fatal(err)
		}
		_, err = f.auth.Authenticate(ctx, raw)
		wantCode(t, err, warden.CodeUnauthenticated)
		_, err = f.auth.Authenticate(ctx, key)
		wantCode(t, err, warden.CodeUnauthenticated)

		// Revocation survives a restart: a fresh service loads it.
		f2 := newFixtureSameStore(t, f)
		_, err = f2.Authenticate(ctx, key)
		wantCode(t, err, warden.CodeUnauthenticated)
	})
}

func newFixtureSameStore(t *testing.T, f *fixture) *authn.Service {
	ids := identity.New(identity.Options{Store: f.st})
	a := authn.New(authn.Options{Store: f.st, Keys: f.kr, Identities: ids, Now: time.Now})
	if err := a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecommissionKillsEverything(t *testing.T) {
	f := newFixture(t, wardentest.SQLite(t))
	id, key := f.agent(t, "bot-2")
	tok, _ := f.auth.IssueToken(ctx, "", key)
	if _, err := f.ids.Decommission(ctx, root, id.ID, "retired"); err != nil {
		t.Fatal(err)
	}
	if err := f.auth.RevokeIdentityKeys(ctx, id.ID); err != nil {
		t.Fatal(err)
	}
	_, err := f.auth.Authenticate(ctx, tok.AccessToken.Reveal())
	if err == nil {
		t.Fatal("token of decommissioned identity accepted")
	}
	_, err = f.auth.Authenticate(ctx, key)
	wantCode(t, err, warden.CodeUnauthenticated)
	// Final: no resume.
	_, err = f.ids.Resume(ctx, root, id.ID, "")
	wantCode(t, err, warden.CodeConflict)
	_, _, err = f.auth.CreateKey(ctx, root, id.ID, 0)
	wantCode(t, err, warden.CodeConflict)
}

// forge builds a JWT with arbitrary header and claims and the given signature
// function.
func forge(header, claims map[string]any, sign func(string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

func TestForgedAndBadTokens(t *testing.T) {
	f := newFixture(t, wardentest.SQLite(t))
	id, key := f.agent(t, "bot-3")
	good, _ := f.auth.IssueToken(ctx, "", key)
	keys, _ := f.auth.ListKeys(ctx, root, id.ID)
	kid, priv, err := f.kr.Signer(ctx, "token")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "warden", "sub": id.ID, "aud": []string{"warden"}, "exp": now.Add(10 * time.Minute).Unix(), "iat": now.Unix(), "jti": "jti_x", "key": keys[0].ID}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(c map[string]any) string {
		t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims(c))
		t.Header["kid"] = kid
		s, err := t.SignedString(priv)
		if err != nil {
			panic(err)
		}
		return s
	}
	// Sanity: a correctly signed token with these claims is accepted.
	if _, err := f.auth.Authenticate(ctx, sign(claims(nil))); err != nil {
		t.Fatalf("well-formed token refused: %v", err)
	}
	pub, _ := f.kr.PublicKey(kid)
	cases := map[string]string{
		"alg none": forge(map[string]any{"alg": "none", "kid": kid}, claims(nil), func(string) []byte { return nil }),
		"HS256 with public key as secret": forge(map[string]any{"alg": "HS256", "kid": kid}, claims(nil), func(in string) []byte {
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(in))
			return m.Sum(nil)
		}),
		"wrong audience":   sign(claims(func(c map[string]any) { c["aud"] = []string{"other-service"} })),
		"wrong issuer":     sign(claims(func(c map[string]any) { c["iss"] = "evil" })),
		"expired":          sign(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"no exp":           sign(claims(func(c map[string]any) { delete(c, "exp") })),
		"issued in future": sign(claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() })),
		"unknown kid": func() string {
			t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims(claims(nil)))
			t.Header["kid"] = "sign:token.99"
			s, _ := t.SignedString(priv)
			return s
		}(),
		"tampered payload": func() string {
			parts := strings.Split(good.AccessToken.Reveal(), ".")
			c := claims(func(c map[string]any) { c["sub"] = "nhi_someoneelse0000000" })
			b, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(b)
			return strings.Join(parts, ".")
		}(),
		"garbage":           "not.a.token",
		"empty":             "",
		"bad key checksum":  key[:len(key)-1] + otherChar(key[len(key)-1]),
		"unknown admin":     warden.NewKey(warden.KeyPrefixAdmin),
		"unknown agent key": warden.NewKey(warden.KeyPrefixAgent),
		"random":            "hello",
		"root token prefix": "root-token-012345678",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.auth.Authenticate(ctx, tok)
			wantCode(t, err, warden.CodeUnauthenticated)
		})
	}
	// Expiry is judged on every cached use too.
	*f.clock = now.Add(16 * time.Minute)
	_, err = f.auth.Authenticate(ctx, good.AccessToken.Reveal())
	wantCode(t, err, warden.CodeUnauthenticated)
}

func TestRevokeOwnToken(t *testing.T) {
	f := newFixture(t, wardentest.SQLite(t))
	_, key := f.agent(t, "bot-4")
	tok, _ := f.auth.IssueToken(ctx, "", key)
	raw := tok.AccessToken.Reveal()
	p, err := f.auth.Authenticate(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.auth.RevokeToken(ctx, p, raw); err != nil {
		t.Fatal(err)
	}
	_, err = f.auth.Authenticate(ctx, raw)
	wantCode(t, err, warden.CodeUnauthenticated)
	if _, err := f.auth.Authenticate(ctx, key); err != nil {
		t.Fatalf("the key itself still works: %v", err)
	}
}

func TestAdminTokensAndRoles(t *testing.T) {
	f := newFixture(t, wardentest.SQLite(t))
	p, err := f.auth.Authenticate(ctx, "root-token-0123456789")
	if err != nil || !p.HasRole(warden.RoleAdmin) || !p.HasRole(warden.RoleApprover) {
		t.Fatalf("root: %+v %v", p, err)
	}
	at, secret, err := f.auth.CreateAdminToken(ctx, root, "alice", "alice@example.com", []string{"owner"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := f.auth.Authenticate(ctx, secret.Reveal())
	if err != nil || alice.Subject != "alice@example.com" || alice.HasRole(warden.RoleAdmin) || !alice.HasRole(warden.RoleOwner) {
		t.Fatalf("alice: %+v %v", alice, err)
	}
	// An owner cannot create admin tokens or grant themselves more.
	_, _, err = f.auth.CreateAdminToken(ctx, alice, "x", "alice@example.com", []string{"admin"}, 0)
	wantCode(t, err, warden.CodeForbidden)
	_, _, err = f.auth.CreateAdminToken(ctx, root, "x", "bob@example.com", []string{"superuser"}, 0)
	wantCode(t, err, warden.CodeInvalid)
	// Owners manage only their own identities.
	mine, err := f.ids.Create(ctx, alice, identity.CreateInput{Name: "alice-bot", Type: identity.TypeBot, Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ids.Create(ctx, alice, identity.CreateInput{Name: "bob-bot", Type: identity.TypeBot, Owner: "bob@example.com"})
	wantCode(t, err, warden.CodeForbidden)
	bobs, _ := f.ids.Create(ctx, root, identity.CreateInput{Name: "bob-bot", Type: identity.TypeBot, Owner: "bob@example.com"})
	_, _, err = f.auth.CreateKey(ctx, alice, bobs.ID, 0)
	wantCode(t, err, warden.CodeNotFound) // not even visible
	_, err = f.ids.Suspend(ctx, alice, bobs.ID, "x")
	wantCode(t, err, warden.CodeNotFound)
	if _, _, err := f.auth.CreateKey(ctx, alice, mine.ID, time.Hour); err != nil {
		t.Fatalf("own identity key: %v", err)
	}
	list, _, err := f.ids.List(ctx, alice, identity.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != mine.ID {
		t.Fatalf("owner list: %d %v", len(list), err)
	}
	// An agent can never manage.
	_, key := f.agent(t, "bot-5")
	agent, _ := f.auth.Authenticate(ctx, key)
	_, _, err = f.auth.CreateKey(ctx, agent, "bot-5", 0)
	wantCode(t, err, warden.CodeForbidden)
	// Revocation takes effect at once.
	if err := f.auth.RevokeAdminToken(ctx, root, at.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.auth.Authenticate(ctx, secret.Reveal())
	wantCode(t, err, warden.CodeUnauthenticated)
}

// BenchmarkVerifyCachedToken measures the hot path: a verified access token
// served from the cache, checked against identity status and revocations.
func BenchmarkVerifyCachedToken(b *testing.B) {
	f := newFixture(b, wardentest.SQLite(b))
	_, key := f.agent(b, "bench-bot")
	tok, _ := f.auth.IssueToken(ctx, "", key)
	raw := tok.AccessToken.Reveal()
	if _, err := f.auth.Authenticate(ctx, raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.auth.Authenticate(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncachedToken is the cost the cache saves (Ed25519 verify
// and JWT parsing).
func BenchmarkVerifyUncachedToken(b *testing.B) {
	f := newFixture(b, wardentest.SQLite(b))
	_, key := f.agent(b, "bench-bot")
	toks := make([]string, 512)
	for i := range toks {
		tk, _ := f.auth.IssueToken(ctx, "", key)
		toks[i] = tk.AccessToken.Reveal()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		// Fresh services have empty caches; rotate through distinct tokens
		// and rebuild the service when they run out.
		if i == len(toks) {
			b.StopTimer()
			f.auth = authn.New(authn.Options{Store: f.st, Keys: f.kr, Identities: f.ids})
			_ = f.auth.Load(ctx)
			i = 0
			b.StartTimer()
		}
		if _, err := f.auth.Authenticate(ctx, toks[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifyAPIKey measures an API key presented as the bearer.
func BenchmarkVerifyAPIKey(b *testing.B) {
	f := newFixture(b, wardentest.SQLite(b))
	_, key := f.agent(b, "bench-bot")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.auth.Authenticate(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// otherChar returns a base62 character different from c: a key with one
// checksum character changed never verifies (the checksum is unique).
func otherChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
