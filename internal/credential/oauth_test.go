package credential_test

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/credential"
)

// tokenServer is an OAuth token endpoint over real HTTPS that records what
// arrived and answers as told.
type tokenServer struct {
	*httptest.Server
	mu       sync.Mutex
	calls    int
	forms    []map[string]string
	basic    [][2]string
	answer   func(n int, form map[string]string) (int, string)
	issued   int
	rotateRT bool
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{}
	ts.answer = func(n int, form map[string]string) (int, string) {
		body := map[string]any{"access_token": "at-" + string(rune('a'+n)), "token_type": "Bearer", "expires_in": 3600}
		if ts.rotateRT && form["grant_type"] == "refresh_token" {
			body["refresh_token"] = "rt-rotated-" + string(rune('a'+n))
		}
		b, _ := json.Marshal(body)
		return 200, string(b)
	}
	ts.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/token" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad request shape", 400)
			return
		}
		_ = r.ParseForm()
		form := map[string]string{}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		u, p, _ := r.BasicAuth()
		ts.mu.Lock()
		n := ts.calls
		ts.calls++
		ts.forms = append(ts.forms, form)
		ts.basic = append(ts.basic, [2]string{u, p})
		answer := ts.answer
		ts.mu.Unlock()
		code, body := answer(n, form)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) Calls() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.calls
}

func (ts *tokenServer) lastForm() map[string]string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.forms[len(ts.forms)-1]
}

func (ts *tokenServer) setAnswer(f func(n int, form map[string]string) (int, string)) {
	ts.mu.Lock()
	ts.answer = f
	ts.mu.Unlock()
}

func (ts *tokenServer) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ts.Certificate())
	return p
}

func oauthEnv(t *testing.T, ts *tokenServer) *env {
	return newEnv(t, func(o *credential.Options) { o.RootCAs = ts.roots() })
}

func TestOAuthClientCredentials(t *testing.T) {
	ts := newTokenServer(t)
	e := oauthEnv(t, ts)
	e.create(t, credential.CreateInput{Name: "crm", Type: credential.TypeOAuth2ClientCredentials, Connector: "crm",
		Secret: map[string]string{"client_id": "warden-client", "client_secret": "s3cret/+&"},
		Config: map[string]any{"token_url": ts.URL + "/token", "scopes": []any{"contacts.read", "deals.read"}, "allow_private_network": true}})

	m, err := e.svc.Resolve(ctx, "crm", "nhi_a")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Fields["token"].Reveal(); got != "at-a" || len(m.Fields) != 1 {
		t.Fatalf("material: token %q, %d fields (only the access token may reach the injector)", got, len(m.Fields))
	}
	f := ts.lastForm()
	if f["grant_type"] != "client_credentials" || f["scope"] != "contacts.read deals.read" || f["client_secret"] != "" {
		t.Fatalf("token request form: %v", f)
	}
	// RFC 6749 2.3.1: form-encoded, then Basic.
	if ts.basic[0] != [2]string{"warden-client", "s3cret%2F%2B%26"} {
		t.Fatalf("client authentication: %v", ts.basic[0])
	}
	// Cached: other identities and later calls share the token.
	for _, id := range []string{"nhi_a", "nhi_b", "nhi_c"} {
		if m, err := e.svc.Resolve(ctx, "crm", id); err != nil || m.Fields["token"].Reveal() != "at-a" {
			t.Fatalf("cached token for %s: %v", id, err)
		}
	}
	if ts.Calls() != 1 {
		t.Fatalf("%d token requests, want 1", ts.Calls())
	}
	// The background sweep refreshes a token in use before it expires
	// (refresh time = expiry - min(lifetime/5, 5m) = 55m).
	e.clock.Add(54 * time.Minute)
	_ = e.svc.Sweep(ctx)
	if ts.Calls() != 1 {
		t.Fatal("refreshed too early")
	}
	e.clock.Add(time.Minute)
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if ts.Calls() != 2 {
		t.Fatalf("not refreshed at its refresh time: %d calls", ts.Calls())
	}
	if m, _ := e.svc.Resolve(ctx, "crm", "nhi_a"); m.Fields["token"].Reveal() != "at-b" {
		t.Fatal("refreshed token not served")
	}
	// A token nobody used since its refresh is not refreshed again.
	e.clock.Add(56 * time.Minute)
	_ = e.svc.Sweep(ctx) // at-b was used once above: refreshed to at-c
	e.clock.Add(56 * time.Minute)
	_ = e.svc.Sweep(ctx)
	if ts.Calls() != 3 {
		t.Fatalf("idle token refreshed: %d calls", ts.Calls())
	}
	// Rotating the client secret fetches a token with the new one.
	if _, err := e.svc.Rotate(ctx, admin, "crm", map[string]string{"client_id": "warden-client", "client_secret": "new-secret"}); err != nil {
		t.Fatal(err)
	}
	if m, err := e.svc.Resolve(ctx, "crm", "nhi_a"); err != nil || m.Version != 2 {
		t.Fatal(err)
	}
	if got := ts.basic[len(ts.basic)-1]; got[1] != "new-secret" {
		t.Fatalf("rotated secret not used: %v", got)
	}
}

func TestOAuthRefreshTokenRotation(t *testing.T) {
	ts := newTokenServer(t)
	ts.rotateRT = true
	e := oauthEnv(t, ts)
	c := e.create(t, credential.CreateInput{Name: "gmail", Type: credential.TypeOAuth2RefreshToken, Connector: "gmail",
		Secret: map[string]string{"refresh_token": "rt-original", "client_id": "cid", "client_secret": "csec"},
		Config: map[string]any{"token_url": ts.URL + "/token", "client_auth": "body", "allow_private_network": true}})
	m, err := e.svc.Resolve(ctx, "gmail", "nhi_a")
	if err != nil || m.Fields["token"].Reveal() != "at-a" {
		t.Fatalf("%v", err)
	}
	f := ts.lastForm()
	if f["grant_type"] != "refresh_token" || f["refresh_token"] != "rt-original" || f["client_id"] != "cid" || f["client_secret"] != "csec" {
		t.Fatalf("refresh form: %v", f)
	}
	// The rotated refresh token is stored as version 2; version 1 retires
	// at the next sweep (the provider invalidated it).
	got, _ := e.svc.Get(ctx, admin, "gmail")
	if got.Version != 2 {
		t.Fatalf("rotated refresh token not stored: version %d", got.Version)
	}
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = e.st.SealedVersion(ctx, c.ID, 1)
	wantCode(t, err, warden.CodeNotFound)
	// The next refresh uses the rotated token, even from a fresh process.
	e2 := credential.New(credential.Options{Store: e.st, Sealer: e.keys, Now: e.clock.Now, RootCAs: ts.roots()})
	if _, err := e2.Resolve(ctx, "gmail", "nhi_a"); err != nil {
		t.Fatal(err)
	}
	if f := ts.lastForm(); f["refresh_token"] != "rt-rotated-a" {
		t.Fatalf("next refresh used %q", f["refresh_token"])
	}
}

func TestOAuthProviderFailures(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"server error", 500, `{"error":"server_error"}`},
		{"invalid grant", 400, `{"error":"invalid_grant","error_description":"nope"}`},
		{"garbage", 200, `<html>hello</html>`},
		{"no access token", 200, `{"token_type":"Bearer","expires_in":3600}`},
		{"non-bearer", 200, `{"access_token":"x","token_type":"mac","expires_in":3600}`},
		{"bad expiry", 200, `{"access_token":"x","token_type":"Bearer","expires_in":-5}`},
		{"token with newline", 200, `{"access_token":"x\r\nX-Evil: 1","token_type":"Bearer"}`},
		{"huge", 200, `{"access_token":"` + strings.Repeat("a", 1<<20) + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t)
			e := oauthEnv(t, ts)
			e.create(t, credential.CreateInput{Name: "crm", Type: credential.TypeOAuth2ClientCredentials, Connector: "crm",
				Secret: map[string]string{"client_id": "id", "client_secret": "sec"},
				Config: map[string]any{"token_url": ts.URL + "/token", "allow_private_network": true}})
			// A good token first.
			if _, err := e.svc.Resolve(ctx, "crm", "nhi_a"); err != nil {
				t.Fatal(err)
			}
			ts.setAnswer(func(int, map[string]string) (int, string) { return tc.status, tc.body })
			// Past the refresh time, the failed refresh keeps the old token
			// (still valid) in service.
			e.clock.Add(56 * time.Minute)
			m, err := e.svc.Resolve(ctx, "crm", "nhi_a")
			if err != nil || m.Fields["token"].Reveal() != "at-a" {
				t.Fatalf("old token lost on provider failure: %v", err)
			}
			if !strings.Contains(e.logs.String(), "oauth token refresh failed") {
				t.Fatal("failure not logged")
			}
			// Past its expiry, the call fails closed.
			e.clock.Add(5 * time.Minute)
			_, err = e.svc.Resolve(ctx, "crm", "nhi_a")
			wantCode(t, err, warden.CodeCredentialUnavailable)
			if strings.Contains(err.Error(), "<html>") || strings.Contains(err.Error(), "nope") {
				t.Fatalf("provider text leaked into the error: %v", err)
			}
			// The provider recovers: so does the credential.
			ts.setAnswer(func(int, map[string]string) (int, string) {
				return 200, `{"access_token":"fresh","token_type":"bearer","expires_in":"600"}`
			})
			if m, err := e.svc.Resolve(ctx, "crm", "nhi_a"); err != nil || m.Fields["token"].Reveal() != "fresh" {
				t.Fatalf("no recovery: %v", err)
			}
		})
	}
}

func TestOAuthRefusesPrivateAddressesAndRedirects(t *testing.T) {
	ts := newTokenServer(t)
	e := oauthEnv(t, ts)
	// https on 127.0.0.1 without allow_private_network: the dialer refuses.
	e.create(t, credential.CreateInput{Name: "crm", Type: credential.TypeOAuth2ClientCredentials, Connector: "crm",
		Secret: map[string]string{"client_id": "id", "client_secret": "sec"}, Config: map[string]any{"token_url": ts.URL + "/token"}})
	_, err := e.svc.Resolve(ctx, "crm", "nhi_a")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	if ts.Calls() != 0 {
		t.Fatal("token request reached a private address")
	}
	// A redirect is not followed (it would carry the client secret away).
	moved := httptest.NewTLSServer(http.RedirectHandler(ts.URL+"/token", http.StatusTemporaryRedirect))
	defer moved.Close()
	e2 := newEnv(t, func(o *credential.Options) {
		o.RootCAs = ts.roots()
		o.RootCAs.AddCert(moved.Certificate())
	})
	e2.create(t, credential.CreateInput{Name: "crm", Type: credential.TypeOAuth2ClientCredentials, Connector: "crm",
		Secret: map[string]string{"client_id": "id", "client_secret": "sec"}, Config: map[string]any{"token_url": moved.URL + "/token", "allow_private_network": true}})
	_, err = e2.svc.Resolve(ctx, "crm", "nhi_a")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	if ts.Calls() != 0 {
		t.Fatal("redirect followed")
	}
}

func TestOAuthRotatedRefreshTokenSurvivesStoreFailure(t *testing.T) {
	ts := newTokenServer(t)
	ts.rotateRT = true
	e := oauthEnv(t, ts)
	e.create(t, credential.CreateInput{Name: "gmail", Type: credential.TypeOAuth2RefreshToken, Connector: "gmail",
		Secret: map[string]string{"refresh_token": "rt-original"}, Config: map[string]any{"token_url": ts.URL + "/token", "allow_private_network": true}})
	// Warm the binding into nothing: break version storage so that the
	// rotated token cannot be stored.
	if _, err := e.st.DB().Exec(`CREATE TRIGGER no_versions BEFORE INSERT ON credential_versions BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	m, err := e.svc.Resolve(ctx, "gmail", "nhi_a")
	if err != nil || m.Fields["token"].Reveal() != "at-a" {
		t.Fatalf("access token not served when storing the rotated refresh token failed: %v", err)
	}
	if c, _ := e.svc.Get(ctx, admin, "gmail"); c.Version != 1 {
		t.Fatal("version changed although the store failed")
	}
	// The next refresh uses the rotated token held in memory, and stores
	// it once the store works again.
	if _, err := e.st.DB().Exec(`DROP TRIGGER no_versions`); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(56 * time.Minute)
	if _, err := e.svc.Resolve(ctx, "gmail", "nhi_a"); err != nil {
		t.Fatal(err)
	}
	if f := ts.lastForm(); f["refresh_token"] != "rt-rotated-a" {
		t.Fatalf("refresh used %q, want the rotated token held in memory", f["refresh_token"])
	}
	if c, _ := e.svc.Get(ctx, admin, "gmail"); c.Version != 2 {
		t.Fatalf("rotated token not stored after recovery: version %d", c.Version)
	}
}
