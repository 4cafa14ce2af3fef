package mcp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/internal/wardentest"
)

// crmUpstream is an HTTP service behind an http connector; it records what
// actually arrived.
type crmUpstream struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	auth     []string
}

func (u *crmUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.requests)
}

func newCRM(t testing.TB) *crmUpstream {
	u := &crmUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.requests = append(u.requests, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true,"path":"` + r.URL.Path + `"}`))
	}))
	t.Cleanup(u.Close)
	return u
}

const crmPolicy = `apiVersion: warden/v1
kind: Policy
subjects: [{identity: support-bot}]
rules:
  - {id: read, effect: allow, actions: ["crm:contacts.get"]}
  - {id: no-evil-mail, effect: deny, actions: ["crm:emails.send"], when: 'emailDomain(params.to) == "evil.example"'}
  - {id: mail, effect: allow, actions: ["crm:emails.send"]}
  - {id: delete-needs-human, effect: require_approval, actions: ["crm:contacts.delete"]}
  - {id: never-admin, effect: deny, actions: ["crm:admin.*"]}
  - {id: admin-allowed-but-denied, effect: allow, actions: ["crm:admin.purge"]}
`

// crmFixture: a real server, an HTTP connector with a credential, and a
// policy that allows, denies per argument, asks a human, and always denies.
func crmFixture(t testing.TB, s *wardentest.Server) (*crmUpstream, string) {
	u := newCRM(t)
	mustDo(t, s, "PUT", "/v1/connectors/crm", "application/yaml", `apiVersion: warden/v1
kind: Connector
base_url: `+u.URL+`
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: contacts.get, method: GET, path: "/contacts/{id}", class: read, description: Get a contact, query: [fields]}
  - {id: contacts.delete, method: DELETE, path: "/contacts/{id}", class: delete}
  - id: emails.send
    method: POST
    path: /emails
    class: write
    description: Send an email
    body_schema: {type: object, properties: {to: {type: string}, subject: {type: string}}, required: [to]}
  - {id: admin.purge, method: POST, path: /admin/purge, class: admin}
  - {id: contacts.list, method: GET, path: /contacts, class: read}
`, 201)
	mustDo(t, s, "POST", "/v1/credentials", "application/json", `{"name":"crm-token","type":"bearer","connector":"crm","secret":{"token":"crm-upstream-secret"}}`, 201)
	key := newAgent(t, s, "support-bot")
	putPolicy(t, s, "support-bot", crmPolicy)
	return u, key
}

func TestGovernedHTTPTools(t *testing.T) {
	wardentest.EngineServers(t, func(t *testing.T, s *wardentest.Server) {
		u, key := crmFixture(t, s)
		cs := agent(t, s, key)

		// Exactly the tools a policy could allow or send for approval:
		// admin.purge is always denied (an unconditional deny), and
		// contacts.list is named by no rule.
		got := toolNames(t, cs)
		slices.Sort(got)
		want := []string{"crm__contacts.delete", "crm__contacts.get", "crm__emails.send"}
		if !slices.Equal(got, want) {
			t.Fatalf("tools/list = %v, want %v", got, want)
		}
		res, _ := cs.ListTools(ctx, nil)
		for _, tl := range res.Tools {
			if tl.Name == "crm__emails.send" {
				b, _ := json.Marshal(tl.InputSchema)
				if !strings.Contains(string(b), `"to"`) || !strings.Contains(string(b), `"required":["to"]`) {
					t.Errorf("emails.send schema lacks the body schema: %s", b)
				}
			}
			if tl.Name == "crm__contacts.get" {
				b, _ := json.Marshal(tl.InputSchema)
				if !strings.Contains(string(b), `"required":["id"]`) || !strings.Contains(string(b), `"fields"`) {
					t.Errorf("contacts.get schema lacks path or query parameters: %s", b)
				}
			}
		}

		// Allowed: executed like /v1/execute, credential injected upstream.
		r := callTool(t, cs, "crm__contacts.get", map[string]any{"id": "42", "fields": "name"})
		if r.IsError || !strings.Contains(text(r), `"path":"/contacts/42"`) {
			t.Fatalf("allowed call: %+v %s", r, text(r))
		}
		if got := u.seen(); len(got) != 1 || got[0] != "GET /contacts/42?fields=name " {
			t.Fatalf("upstream saw %q", got)
		}
		if u.auth[0] != "Bearer crm-upstream-secret" || strings.Contains(u.auth[0], key) {
			t.Fatalf("upstream credential %q", u.auth[0])
		}

		// A forbidden argument: a clear denial naming policy and rule.
		r = callTool(t, cs, "crm__emails.send", map[string]any{"to": "x@evil.example", "subject": "hi"})
		if !r.IsError || !strings.Contains(text(r), "no-evil-mail") || !strings.Contains(text(r), "denied") {
			t.Fatalf("forbidden argument: %+v %s", r, text(r))
		}
		if d := structured(t, r); d["code"] != "denied" || d["rule"] != "no-evil-mail" || d["action"] != "crm:emails.send" {
			t.Fatalf("denial content %v", d)
		}
		r = callTool(t, cs, "crm__emails.send", map[string]any{"to": "x@good.example", "subject": "hi"})
		if r.IsError {
			t.Fatalf("allowed send: %s", text(r))
		}

		// Schema-violating arguments never reach the gate or the upstream.
		before := len(u.seen())
		r = callTool(t, cs, "crm__emails.send", map[string]any{"subject": "no recipient"})
		if !r.IsError || !strings.Contains(text(r), "input schema") {
			t.Fatalf("schema violation: %s", text(r))
		}
		r = callTool(t, cs, "crm__contacts.get", map[string]any{"id": "../admin"})
		if !r.IsError {
			t.Fatalf("path traversal in a path parameter: %s", text(r))
		}

		// A sensitive call: pending approval with its id; nothing sent.
		r = callTool(t, cs, "crm__contacts.delete", map[string]any{"id": "7"})
		p := structured(t, r)
		id, _ := p["approval_id"].(string)
		if r.IsError || p["decision"] != "require_approval" || id == "" || !strings.Contains(text(r), id) {
			t.Fatalf("pending approval: %s %v", text(r), p)
		}
		// The wrong arguments with that approval are refused.
		r = callTool(t, cs, "crm__contacts.delete", map[string]any{"id": "8", "_warden_approval": id})
		if !r.IsError {
			t.Fatalf("approval reused for other arguments: %s", text(r))
		}
		mustDo(t, s, "POST", "/v1/approvals/"+id+"/approve", "application/json", `{"comment":"ok"}`, 200)
		r = callTool(t, cs, "crm__contacts.delete", map[string]any{"id": "7", "_warden_approval": id})
		if r.IsError || !strings.Contains(text(r), "/contacts/7") {
			t.Fatalf("approved retry: %s", text(r))
		}
		// Consumed exactly once.
		r = callTool(t, cs, "crm__contacts.delete", map[string]any{"id": "7", "_warden_approval": id})
		if !r.IsError {
			t.Fatalf("approval used twice: %s", text(r))
		}

		// A hidden tool is decided (and audited) like any call: denied.
		r = callTool(t, cs, "crm__admin.purge", nil)
		if !r.IsError || !strings.Contains(text(r), "never-admin") {
			t.Fatalf("hidden tool: %s", text(r))
		}
		// Tools that do not exist, or renamed ones, are JSON-RPC errors.
		for _, name := range []string{"crm__nope", "nope__contacts.get", "crm:contacts.get", "CRM__contacts.get", "crm__contacts.get ", ""} {
			if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
				t.Errorf("tool %q: err = %v, want unknown tool", name, err)
			}
		}
		var sent []string
		for _, x := range u.seen()[before:] {
			sent = append(sent, strings.Fields(x)[0]+" "+strings.Fields(x)[1])
		}
		if !slices.Equal(sent, []string{"DELETE /contacts/7"}) {
			t.Fatalf("upstream received %q after the refusals; want only the approved delete", sent)
		}

		// Every call is in the audit log, denials included.
		b := mustDo(t, s, "GET", "/v1/audit?action=crm:admin.purge", "", "", 200)
		if !strings.Contains(string(b), `"decision":"deny"`) {
			t.Fatalf("hidden-tool call not audited: %s", b)
		}
	})
}

func TestApprovalWait(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	u, key := crmFixture(t, s)
	cs := agent(t, s, key)
	// Approve as soon as the request exists; the call waits for it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			st, _, b := do(t, s, "GET", "/v1/approvals?status=pending", s.RootToken, "", "")
			var l struct {
				Approvals []struct {
					ID string `json:"id"`
				} `json:"approvals"`
			}
			if st == 200 && json.Unmarshal(b, &l) == nil && len(l.Approvals) > 0 {
				do(t, s, "POST", "/v1/approvals/"+l.Approvals[0].ID+"/approve", s.RootToken, "application/json", `{}`)
				return
			}
			select {
			case <-t.Context().Done():
				return
			default:
			}
		}
	}()
	r, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "crm__contacts.delete", Arguments: map[string]any{"id": "9"}, Meta: sdk.Meta{"warden/wait": 30}})
	<-done
	if err != nil || r.IsError || !strings.Contains(text(r), "/contacts/9") {
		t.Fatalf("waited call: %v %s", err, text(r))
	}
	if got := u.seen(); len(got) != 1 || !strings.HasPrefix(got[0], "DELETE /contacts/9") {
		t.Fatalf("upstream saw %q", got)
	}
}

func TestAuthentication(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	_, key := crmFixture(t, s)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	for _, tok := range []string{"", "not-a-token", s.RootToken} {
		st, h, _ := doMCP(t, s, tok, "", init)
		want := 401
		if tok == s.RootToken {
			want = 403 // an admin token is not an agent
		}
		if st != want {
			t.Errorf("token %q: status %d, want %d", tok, st, want)
		}
		if want == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: Bearer (%q)", h.Get("WWW-Authenticate"))
		}
	}
	// A session opened by one identity cannot be used with another's token,
	// nor without a token.
	st, h, b := doMCP(t, s, key, "", init)
	sid := h.Get("Mcp-Session-Id")
	if st != 200 || sid == "" {
		t.Fatalf("initialize: %d %s", st, b)
	}
	other := newAgent(t, s, "other-bot")
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	if st, _, b := doMCP(t, s, other, sid, list); st != 403 {
		t.Errorf("another identity's token on the session: %d %s", st, b)
	}
	if st, _, _ := doMCP(t, s, "", sid, list); st != 401 {
		t.Errorf("session id without a token: %d", st)
	}
}

// doMCP posts one raw JSON-RPC message to /mcp.
func doMCP(t testing.TB, s *wardentest.Server, token, session, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/mcp", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestBadInput(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	u, key := crmFixture(t, s)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	_, h, _ := doMCP(t, s, key, "", init)
	sid := h.Get("Mcp-Session-Id")
	doMCP(t, s, key, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	cases := []struct {
		name, body string
		wantStatus int
		wantText   string
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":3,"method":`, 400, ""},
		{"not JSON-RPC", `[1,2,3]`, 400, ""},
		// The SDK refuses methods it does not know before they reach a server.
		{"unknown method", `{"jsonrpc":"2.0","id":4,"method":"tools/destroy"}`, 400, `not handled`},
		{"unknown tool", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"crm__nope"}}`, 200, `unknown tool`},
		{"arguments not an object", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"crm__contacts.get","arguments":[1]}}`, 200, ``},
		{"oversized", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crm__emails.send","arguments":{"to":"a@b.c","subject":"` + strings.Repeat("x", 2<<20) + `"}}}`, 413, ""},
	}
	for _, c := range cases {
		st, _, b := doMCP(t, s, key, sid, c.body)
		if st != c.wantStatus && !(c.wantStatus == 400 && st == 200 && strings.Contains(string(b), `"error"`)) {
			t.Errorf("%s: status %d %s, want %d", c.name, st, clipS(b), c.wantStatus)
		}
		if c.wantText != "" && !strings.Contains(string(b), c.wantText) {
			t.Errorf("%s: body %s lacks %q", c.name, clipS(b), c.wantText)
		}
		if c.name == "arguments not an object" && !strings.Contains(string(b), `"isError":true`) && !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s: %s", c.name, clipS(b))
		}
	}
	if got := u.seen(); len(got) != 0 {
		t.Fatalf("bad input reached the upstream: %q", got)
	}
	// Warden stays up and the session still works.
	cs := agent(t, s, key)
	if r := callTool(t, cs, "crm__contacts.get", map[string]any{"id": "1"}); r.IsError {
		t.Fatalf("after bad input: %s", text(r))
	}
}

func clipS(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
