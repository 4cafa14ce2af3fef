package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/policy"
	"warden/internal/proxy"
	"warden/internal/seal"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var root = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}

// spyAuditor records what the gate asked to keep, and can be made to fail.
type spyAuditor struct {
	mu      sync.Mutex
	records []gate.Record
	fail    bool
}

func (s *spyAuditor) Record(_ context.Context, r gate.Record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return 0, errors.New("disk full")
	}
	s.records = append(s.records, r)
	return int64(len(s.records)), nil
}

func (s *spyAuditor) Enqueue(ctx context.Context, r gate.Record) error {
	_, err := s.Record(ctx, r)
	return err
}

func (s *spyAuditor) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.records {
		out = append(out, r.Kind+":"+r.Decision)
	}
	return out
}

// upstream records every request that reached it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	got  []*http.Request
	body []string
	h    http.HandlerFunc
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, r.Clone(context.Background()))
		u.body = append(u.body, string(b))
		h := u.h
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[len(u.got)-1]
}

type harness struct {
	t     *testing.T
	ids   *identity.Service
	creds *credential.Service
	conns *connector.Registry
	eng   *policy.Engine
	audit *spyAuditor
	srv   *httptest.Server
	agent warden.Principal
	up    *upstream
}

const testPolicy = `apiVersion: warden/v1
kind: Policy
name: agent
subjects: [{identity: agent}]
rules:
  - {id: read, effect: allow, actions: ["svc:items.get", "svc:items.list", "svc:echo.get"]}
  - id: create-in-org
    effect: allow
    actions: ["svc:items.create"]
    when: 'has(params.org) && params.org == "acme"'
  - {id: few-deletes, effect: allow, actions: ["svc:items.delete"], limit: {count: 1, per: 1h}}
  - {id: no-admin, effect: deny, actions: ["svc:admin.*"]}
`

func newHarness(t *testing.T, authType string) *harness {
	t.Helper()
	st := wardentest.SQLite(t)
	kr, err := seal.Open(ctx, seal.GenerateMasterKey(), st)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, audit: &spyAuditor{}, up: newUpstream(t)}
	h.ids = identity.New(identity.Options{Store: st})
	id, err := h.ids.Create(ctx, root, identity.CreateInput{Name: "agent", Type: identity.TypeAIAgent, Owner: "o@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	h.agent = warden.Principal{Kind: warden.PrincipalIdentity, ID: id.ID, Subject: id.Name}
	doc, _ := policy.Parse([]byte(testPolicy), "application/yaml")
	pol, err := policy.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = policy.NewEngine(policy.Options{})
	h.eng.Put(pol)
	h.creds = credential.New(credential.Options{Store: st, Sealer: kr})
	cat, err := connector.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	h.conns = connector.NewRegistry(st, cat)
	h.putConnector(`apiVersion: warden/v1
kind: Connector
name: svc
base_url: ` + h.up.URL + `/api
allow_private_network: true
timeout: 2s
auth: ` + authType + `
operations:
  - {id: items.list, method: GET, path: /items, class: read}
  - {id: items.get, method: GET, path: "/items/{id}", class: read}
  - {id: items.create, method: POST, path: /items, class: write}
  - {id: items.delete, method: DELETE, path: "/items/{id}", class: delete}
  - {id: admin.purge, method: POST, path: /items/purge, class: admin}
  - {id: echo.get, method: GET, path: /echo, class: read}
`)
	g := gate.New(gate.Options{Identities: h.ids, Policies: h.eng, Credentials: h.creds, Auditor: h.audit})
	p := proxy.New(proxy.Options{Gate: g, Connectors: h.conns})
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/execute" {
			var in apitype.ExecuteRequest
			_ = json.NewDecoder(r.Body).Decode(&in)
			p.Execute(w, r, h.agent, in)
			return
		}
		p.ServeHTTP(w, r, h.agent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) putConnector(doc string) {
	h.t.Helper()
	if _, _, err := h.conns.Put(ctx, root, "", []byte(doc), "application/yaml"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) secret(typ string, fields map[string]string) {
	h.t.Helper()
	if _, err := h.creds.Create(ctx, root, credential.CreateInput{Name: "svc-cred", Type: typ, Connector: "svc", Secret: fields}); err != nil {
		h.t.Fatal(err)
	}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type result struct {
	status int
	header http.Header
	body   string
	prob   apitype.Problem
}

func (h *harness) do(method, rawPath string, body string, hdr map[string]string) result {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+"/x", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.URL.Opaque = rawPath // send the path exactly as written
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, &r.prob)
	}
	return r
}

func TestAllowedCallInjectsAndStrips(t *testing.T) {
	h := newHarness(t, "{type: bearer}")
	h.secret(credential.TypeBearer, map[string]string{"token": "upstream-canary-token"})
	r := h.do("GET", "/proxy/svc/items/42?expand=1", "", map[string]string{
		"Authorization": "Bearer agent-own-token", "Cookie": "session=agent", "X-Forwarded-For": "6.6.6.6",
		"Connection": "Authorization", "Warden-Approval": "x",
	})
	if r.status != 200 || r.header.Get("Warden-Decision") != "allow" || r.body != `{"ok":true}` {
		t.Fatalf("got %d %q %s", r.status, r.header.Get("Warden-Decision"), r.body)
	}
	got := h.up.last()
	if got.URL.Path != "/api/items/42" || got.URL.Query().Get("expand") != "1" {
		t.Errorf("upstream saw %s", got.URL)
	}
	if got.Header.Get("Authorization") != "Bearer upstream-canary-token" {
		t.Errorf("credential not injected: %q", got.Header.Get("Authorization"))
	}
	for _, hname := range []string{"Cookie", "X-Forwarded-For", "Warden-Approval"} {
		if got.Header.Get(hname) != "" {
			t.Errorf("%s reached the upstream", hname)
		}
	}
	if strings.Contains(r.body, "canary") {
		t.Fatal("secret in response")
	}
	// The completed record is written after the agent has its answer.
	deadline := time.Now().Add(5 * time.Second)
	for len(h.audit.kinds()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if k := h.audit.kinds(); len(k) != 2 || k[0] != "operation.decided:allow" || k[1] != "operation.completed:allow" {
		t.Errorf("audit: %v", k)
	}
}

func TestDeniedCallsNeverReachUpstream(t *testing.T) {
	h := newHarness(t, "{type: bearer}")
	h.secret(credential.TypeBearer, map[string]string{"token": "tok-123456"})
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"deny rule", "POST", "/proxy/svc/items/purge", "", nil, 403, "denied"},
		{"no matching policy", "GET", "/proxy/svc/items", "", nil, 200, ""},
		{"argument outside org", "POST", "/proxy/svc/items", `{"org":"evil"}`, nil, 403, "no_matching_policy"},
		{"unknown operation", "PUT", "/proxy/svc/items/1", "", nil, 403, "unknown_operation"},
		{"unknown connector", "GET", "/proxy/nope/items", "", nil, 403, "unknown_operation"},
		{"dot dot", "GET", "/proxy/svc/items/../items/purge", "", nil, 400, "invalid"},
		{"encoded dot dot", "GET", "/proxy/svc/items/%2e%2e/purge", "", nil, 400, "invalid"},
		{"encoded slash", "GET", "/proxy/svc/items/1%2fpurge", "", nil, 400, "invalid"},
		{"double encoded slash", "GET", "/proxy/svc/items/1%252fpurge", "", nil, 400, "invalid"},
		{"double slash", "GET", "/proxy/svc//items/1", "", nil, 400, "invalid"},
		{"backslash", "GET", `/proxy/svc/items\purge`, "", nil, 400, "invalid"},
		{"case variant of a literal", "GET", "/proxy/svc/ITEMS/1", "", nil, 400, "invalid"},
		{"method override", "POST", "/proxy/svc/items", `{"org":"acme"}`, map[string]string{"X-HTTP-Method-Override": "DELETE"}, 400, "invalid"},
		{"h2c upgrade", "GET", "/proxy/svc/items/1", "", map[string]string{"Upgrade": "h2c", "Connection": "Upgrade"}, 400, "invalid"},
		{"bad json", "POST", "/proxy/svc/items", `{"org":`, nil, 400, "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.up.count()
			r := h.do(c.method, c.path, c.body, c.hdr)
			if c.status == 200 {
				return // sanity row: list is allowed
			}
			if r.status != c.status || r.prob.Code != c.code {
				t.Fatalf("got %d %s (%s), want %d %s", r.status, r.prob.Code, r.body, c.status, c.code)
			}
			if h.up.count() != before {
				t.Fatalf("forwarded to upstream: %s", h.up.last().URL)
			}
			if r.header.Get("Warden-Decision") == "" {
				t.Error("no Warden-Decision header")
			}
		})
	}
	// The deny names its policy and rule.
	r := h.do("POST", "/proxy/svc/items/purge", "", nil)
	if r.prob.Policy != "agent" || r.prob.Rule != "no-admin" || r.header.Get("Warden-Decision") != "deny" {
		t.Errorf("deny details: %+v %q", r.prob, r.header.Get("Warden-Decision"))
	}
	// Allowed by argument.
	if r := h.do("POST", "/proxy/svc/items", `{"org":"acme","n":1}`, nil); r.status != 200 || h.up.body[len(h.up.body)-1] != `{"org":"acme","n":1}` {
		t.Errorf("create in org: %d %s", r.status, r.body)
	}
}

func TestRateLimitAndAuditFailure(t *testing.T) {
	h := newHarness(t, "{type: bearer}")
	h.secret(credential.TypeBearer, map[string]string{"token": "tok-123456"})
	if r := h.do("DELETE", "/proxy/svc/items/1", "", nil); r.status != 200 {
		t.Fatalf("first delete: %d %s", r.status, r.body)
	}
	before := h.up.count()
	r := h.do("DELETE", "/proxy/svc/items/2", "", nil)
	if r.status != 429 || r.prob.Code != "rate_limited" || r.header.Get("Retry-After") == "" || h.up.count() != before {
		t.Fatalf("over limit: %d %s %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	h.audit.fail = true
	r = h.do("GET", "/proxy/svc/items/1", "", nil)
	if r.status != 503 || r.prob.Code != "audit_unavailable" || h.up.count() != before {
		t.Fatalf("audit down: %d %s (upstream calls %d -> %d)", r.status, r.body, before, h.up.count())
	}
}

func TestCredentialTypes(t *testing.T) {
	for _, c := range []struct {
		auth, typ string
		fields    map[string]string
		check     func(r *http.Request) bool
	}{
		{"{type: header, name: X-Api-Key}", credential.TypeHeader, map[string]string{"name": "X-Api-Key", "value": "k-123456"}, func(r *http.Request) bool { return r.Header.Get("X-Api-Key") == "k-123456" }},
		{"{type: basic}", credential.TypeBasic, map[string]string{"username": "u", "password": "p-123456"}, func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == "u" && p == "p-123456"
		}},
		{"{type: query, name: api_key}", credential.TypeQuery, map[string]string{"name": "api_key", "value": "q-123456"}, func(r *http.Request) bool { return r.URL.Query().Get("api_key") == "q-123456" }},
	} {
		t.Run(c.typ, func(t *testing.T) {
			h := newHarness(t, c.auth)
			h.secret(c.typ, c.fields)
			if r := h.do("GET", "/proxy/svc/items/1", "", map[string]string{"X-Api-Key": "agent-forged"}); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if !c.check(h.up.last()) {
				t.Fatalf("not injected: %v %v", h.up.last().Header, h.up.last().URL)
			}
		})
	}
	t.Run("no credential", func(t *testing.T) {
		h := newHarness(t, "{type: bearer}")
		r := h.do("GET", "/proxy/svc/items/1", "", nil)
		if r.status != 403 || r.prob.Code != "no_credential" || h.up.count() != 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func TestHostileUpstream(t *testing.T) {
	h := newHarness(t, "{type: bearer}")
	h.secret(credential.TypeBearer, map[string]string{"token": "echo-canary-secret"})
	h.up.h = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/echo":
			w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
			w.WriteHeader(200)
		case "/api/items/redirect":
			w.Header().Set("Location", "https://elsewhere.example/steal")
			w.WriteHeader(302)
		case "/api/items/hang":
			time.Sleep(3 * time.Second)
		}
	}
	r := h.do("GET", "/proxy/svc/echo", "", nil)
	if r.status != 200 || strings.Contains(strings.Join(r.header.Values("X-Echo-Auth"), ""), "canary") {
		t.Fatalf("echoed credential reached the agent: %v", r.header)
	}
	r = h.do("GET", "/proxy/svc/items/redirect", "", nil)
	if r.status != 302 || h.up.count() != 2 {
		t.Fatalf("redirect must be passed back, not followed: %d", r.status)
	}
	start := time.Now()
	r = h.do("GET", "/proxy/svc/items/hang", "", nil)
	if r.status != 502 || r.prob.Code != "upstream_unavailable" || time.Since(start) > 2900*time.Millisecond {
		t.Fatalf("hanging upstream: %d %s after %s", r.status, r.body, time.Since(start))
	}
}

func TestSSRFRefusesPrivateAddresses(t *testing.T) {
	h := newHarness(t, "{type: none}")
	// Same upstream, but the connector does not allow private networks: the
	// dialer refuses loopback at connect time.
	h.putConnector(`apiVersion: warden/v1
kind: Connector
name: svc
base_url: ` + strings.Replace(h.up.URL, "http://", "https://", 1) + `
auth: {type: none}
operations:
  - {id: items.get, method: GET, path: "/items/{id}", class: read}
`)
	r := h.do("GET", "/proxy/svc/items/1", "", nil)
	if r.status != 502 || !strings.Contains(r.prob.Detail, "refusing to dial") || h.up.count() != 0 {
		t.Fatalf("loopback dialed: %d %s", r.status, r.body)
	}
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.1.1", "::1", "fd00::1", "100.64.0.1", "::ffff:127.0.0.1"} {
		if proxy.PublicAddr(mustAddr(s)) {
			t.Errorf("%s counted as public", s)
		}
	}
	if !proxy.PublicAddr(mustAddr("93.184.216.34")) {
		t.Error("public address refused")
	}
}

func TestExecute(t *testing.T) {
	h := newHarness(t, "{type: bearer}")
	h.secret(credential.TypeBearer, map[string]string{"token": "tok-123456"})
	post := func(body string) result {
		req, _ := http.NewRequest("POST", h.srv.URL+"/v1/execute", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := result{status: resp.StatusCode, header: resp.Header, body: string(b)}
		_ = json.Unmarshal(b, &r.prob)
		return r
	}
	r := post(`{"connector":"svc","operation":"items.get","resource":{"id":"7"},"params":{"fields":["a","b"]}}`)
	var out apitype.ExecuteResponse
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.status != 200 || out.Status != 200 || string(out.Body) != `{"ok":true}` {
		t.Fatalf("execute get: %d %s", r.status, r.body)
	}
	if got := h.up.last(); got.URL.Path != "/api/items/7" || got.URL.RawQuery != "fields=a&fields=b" || got.Header.Get("Authorization") != "Bearer tok-123456" {
		t.Fatalf("upstream saw %s %v", got.URL, got.Header)
	}
	r = post(`{"connector":"svc","operation":"items.create","params":{"org":"acme","title":"x"}}`)
	if r.status != 200 || h.up.body[len(h.up.body)-1] != `{"org":"acme","title":"x"}` {
		t.Fatalf("execute create: %d %s", r.status, r.body)
	}
	before := h.up.count()
	for body, code := range map[string]string{
		`{"connector":"svc","operation":"items.create","params":{"org":"evil"}}`:   "no_matching_policy",
		`{"connector":"svc","operation":"nope"}`:                                   "unknown_operation",
		`{"connector":"svc","operation":"items.get","resource":{"id":"../purge"}}`: "invalid",
		`{"connector":"svc","operation":"items.get","resource":{"zzz":"1"}}`:       "invalid",
		`{"connector":"svc","operation":"items.get"}`:                              "invalid",
	} {
		if r := post(body); r.prob.Code != code {
			t.Errorf("%s: got %d %s", body, r.status, r.body)
		}
	}
	if h.up.count() != before {
		t.Fatal("refused execute reached the upstream")
	}
}
