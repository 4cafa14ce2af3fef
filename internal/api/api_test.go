package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"warden/apitype"
	"warden/client"
	"warden/internal/api"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var update = flag.Bool("update", false, "rewrite golden files")

// call sends a raw request and returns status, headers and the decoded
// problem (if any).
func call(t *testing.T, s *wardentest.Server, method, path, token, ctype, body string) (int, http.Header, apitype.Problem, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p apitype.Problem
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("bad problem body %q", b)
		}
		if p.Code == "" || p.Status != resp.StatusCode || p.RequestID == "" {
			t.Fatalf("incomplete problem: %s", b)
		}
	}
	return resp.StatusCode, resp.Header, p, b
}

func problemCode(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Problem.Code
	}
	return ""
}

func countIdentities(t *testing.T, s *wardentest.Server) int {
	t.Helper()
	l, err := s.Root.ListIdentities(ctx, url.Values{"limit": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Identities)
}

func TestBadInputChangesNothing(t *testing.T) {
	wardentest.EngineServers(t, func(t *testing.T, s *wardentest.Server) {
		root := s.RootToken
		if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "taken", Type: "bot", Owner: "a@example.com"}); err != nil {
			t.Fatal(err)
		}
		before := countIdentities(t, s)
		cases := []struct {
			name, body, ctype string
			status            int
			code, field       string
		}{
			{"malformed json", `{"name": "x",`, "application/json", 400, "invalid", ""},
			{"not json", `name=x`, "application/x-www-form-urlencoded", 400, "invalid", ""},
			{"unknown field", `{"name":"x","type":"bot","owner":"a@b","admin":true}`, "application/json", 400, "invalid", "admin"},
			{"wrong type", `{"name":5,"type":"bot","owner":"a@b"}`, "application/json", 400, "invalid", "name"},
			{"two objects", `{"name":"x","type":"bot","owner":"a@b"}{}`, "application/json", 400, "invalid", ""},
			{"empty body", ``, "application/json", 400, "invalid", ""},
			{"name collision", `{"name":"taken","type":"bot","owner":"a@b"}`, "application/json", 409, "conflict", "name"},
			{"invalid type", `{"name":"x","type":"robot","owner":"a@b"}`, "application/json", 400, "invalid", "type"},
			{"missing owner", `{"name":"x","type":"bot"}`, "application/json", 400, "invalid", "owner"},
			{"sql in name", `{"name":"x'; DROP TABLE identities;--","type":"bot","owner":"a@b"}`, "application/json", 400, "invalid", "name"},
			{"control chars", `{"name":"ok-name","type":"bot","owner":"a@b\u0000"}`, "application/json", 400, "invalid", "owner"},
			{"id prefix name", `{"name":"nhi_fake","type":"bot","owner":"a@b"}`, "application/json", 400, "invalid", "name"},
			{"oversized", `{"name":"x","type":"bot","owner":"a@b","description":"` + strings.Repeat("a", 2<<20) + `"}`, "application/json", 413, "too_large", ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				status, _, p, body := call(t, s, "POST", "/v1/identities", root, c.ctype, c.body)
				if status != c.status || p.Code != c.code || (c.field != "" && p.Field != c.field) {
					t.Fatalf("got %d %s field=%q (%s), want %d %s field=%q", status, p.Code, p.Field, body, c.status, c.code, c.field)
				}
			})
		}
		if after := countIdentities(t, s); after != before {
			t.Fatalf("bad input changed the inventory: %d -> %d", before, after)
		}
		// SQL metacharacters in filters are data.
		status, _, _, body := call(t, s, "GET", "/v1/identities?owner="+url.QueryEscape("' OR 1=1 --")+"&label="+url.QueryEscape("team=x' OR 1=1"), root, "", "")
		if status != 200 || !strings.Contains(string(body), `"identities":[]`) {
			t.Fatalf("metachar filter: %d %s", status, body)
		}
		for _, q := range []string{"limit=abc", "limit=0", "limit=5000", "type=robot", "status=gone", "cursor=%21%21", "label=nokey"} {
			if status, _, p, _ := call(t, s, "GET", "/v1/identities?"+q, root, "", ""); status != 400 || p.Code != "invalid" {
				t.Errorf("filter %s: %d %s", q, status, p.Code)
			}
		}
		if status, _, p, _ := call(t, s, "GET", "/v1/identities/"+url.PathEscape("nope' OR '1'='1"), root, "", ""); status != 404 || p.Code != "not_found" {
			t.Errorf("injection in path: %d %s", status, p.Code)
		}
	})
}

func TestAuthenticationFailures(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	id, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "agent-a", Type: "ai_agent", Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Root.CreateKey(ctx, id.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"missing": "", "garbage": "garbage", "jwt garbage": "a.b.c", "bad checksum": k.Key[:len(k.Key)-2] + "zz"} {
		status, h, p, _ := call(t, s, "GET", "/v1/whoami", tok, "", "")
		if status != 401 || p.Code != "unauthenticated" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %s %q", name, status, p.Code, h.Get("WWW-Authenticate"))
		}
	}
	// An agent's credential never reaches an admin route.
	for _, r := range [][2]string{{"GET", "/v1/identities"}, {"POST", "/v1/identities/agent-a/keys"}, {"POST", "/v1/identities/agent-a/resume"}, {"DELETE", "/v1/identities/agent-a"}, {"GET", "/v1/admin-tokens"}} {
		status, _, p, _ := call(t, s, r[0], r[1], k.Key, "application/json", "{}")
		if status != 403 || p.Code != "forbidden" {
			t.Errorf("agent on %s %s: %d %s", r[0], r[1], status, p.Code)
		}
	}
	// An admin token is not an agent.
	if status, _, p, _ := call(t, s, "GET", "/v1/whoami", s.RootToken, "", ""); status != 403 || p.Code != "forbidden" {
		t.Errorf("admin on whoami: %d %s", status, p.Code)
	}
	// Token endpoint errors are OAuth2-shaped.
	agent := s.Client("")
	if _, err := agent.Token(ctx, "", "wdn_ak_notakey"); problemCode(err) != "unauthenticated" {
		t.Errorf("bad client secret: %v", err)
	}
	form := url.Values{"grant_type": {"password"}, "client_secret": {k.Key}}
	status, _, _, body := call(t, s, "POST", "/v1/token", "", "application/x-www-form-urlencoded", form.Encode())
	if status != 400 || !strings.Contains(string(body), "unsupported_grant_type") {
		t.Errorf("grant type: %d %s", status, body)
	}
	// HTTP Basic client authentication (RFC 6749 2.3.1).
	req, _ := http.NewRequest("POST", s.URL+"/v1/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("agent-a", k.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tr apitype.TokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != 200 || tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || tr.AccessToken == "" {
		t.Fatalf("basic auth token: %d %+v", resp.StatusCode, tr)
	}
	if who, err := s.Client(tr.AccessToken).Whoami(ctx); err != nil || who.ID != id.ID {
		t.Fatalf("whoami with token: %v", err)
	}
	// Revoke own token.
	status, _, _, _ = call(t, s, "POST", "/v1/token/revoke", tr.AccessToken, "application/x-www-form-urlencoded", "token="+tr.AccessToken)
	if status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if _, err := s.Client(tr.AccessToken).Whoami(ctx); problemCode(err) != "unauthenticated" {
		t.Fatalf("revoked token still works: %v", err)
	}
}

func TestOwnerSegregation(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	alice, err := s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "alice", Subject: "alice@example.com", Roles: []string{"owner"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "bobs-bot", Type: "bot", Owner: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	ac := s.Client(alice.Token)
	if _, err := ac.CreateIdentity(ctx, apitype.CreateIdentity{Name: "alices-bot", Type: "bot", Owner: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.CreateIdentity(ctx, apitype.CreateIdentity{Name: "sneaky", Type: "bot", Owner: "bob@example.com"}); problemCode(err) != "forbidden" {
		t.Errorf("owner creating for another: %v", err)
	}
	if _, err := ac.SetStatus(ctx, "bobs-bot", "suspend", "mine now"); problemCode(err) != "not_found" {
		t.Errorf("owner suspending another's: %v", err)
	}
	if _, err := ac.CreateKey(ctx, "bobs-bot", 0); problemCode(err) != "not_found" {
		t.Errorf("owner keying another's: %v", err)
	}
	if _, err := ac.GetIdentity(ctx, "bobs-bot"); problemCode(err) != "not_found" {
		t.Errorf("owner reading another's: %v", err)
	}
	bob, _ := s.Root.GetIdentity(ctx, "bobs-bot")
	if bob.Status != "active" {
		t.Fatalf("bob's bot changed: %s", bob.Status)
	}
	if _, err := ac.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "x", Subject: "alice@example.com", Roles: []string{"admin"}}); problemCode(err) != "forbidden" {
		t.Errorf("owner minting admin: %v", err)
	}
}

func TestHealthMetricsOpenAPI(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _, _, body := call(t, s, "GET", p, "", "", ""); status != 200 || !strings.Contains(string(body), `"ok"`) {
			t.Errorf("%s: %d %s", p, status, body)
		}
	}
	_, _ = s.Root.Whoami(ctx)
	status, _, _, body := call(t, s, "GET", "/metrics", "", "", "")
	if status != 200 || !strings.Contains(string(body), `warden_http_requests_total{code="4xx",route="GET /v1/whoami"}`) {
		t.Errorf("metrics: %d", status)
	}
	if strings.Contains(string(body), s.RootToken) {
		t.Fatal("metrics leak the root token")
	}
	status, _, p, _ := call(t, s, "GET", "/v1/nothing", "", "", "")
	if status != 404 || p.Code != "not_found" {
		t.Errorf("unknown route: %d %s", status, p.Code)
	}
	status, _, _, served := call(t, s, "GET", "/openapi.json", "", "", "")
	if status != 200 {
		t.Fatal(status)
	}
	var doc map[string]any
	if err := json.Unmarshal(served, &doc); err != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %v", err)
	}
	golden := "testdata/openapi.json"
	if *update {
		if err := os.WriteFile(golden, served, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/api -run OpenAPI -update)", err)
	}
	if string(want) != string(served) {
		t.Fatal("openapi.json differs from testdata/openapi.json: the API changed; review and run go test ./internal/api -run OpenAPI -update")
	}
}

// TestOpenAPICoversRoutes checks the generated document names every served
// route, so the document cannot drift from the mux.
func TestOpenAPICoversRoutes(t *testing.T) {
	a := api.New(api.Options{})
	b, err := a.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/v1/identities", "/v1/identities/{id}", "/v1/identities/{id}/keys", "/v1/token", "/v1/whoami", "/healthz", "/metrics"} {
		if _, ok := doc.Paths[want]; !ok {
			t.Errorf("openapi lacks %s", want)
		}
	}
	if _, ok := doc.Paths["/v1/identities/{id}"]["patch"]; !ok {
		t.Error("openapi lacks PATCH /v1/identities/{id}")
	}
}
