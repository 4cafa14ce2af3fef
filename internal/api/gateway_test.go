package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/approval"
	"warden/internal/config"
	"warden/internal/wardentest"
)

// gatewayFixture: a real server, an httptest upstream, a connector, a
// credential and a policy where sending needs a human.
type gatewayFixture struct {
	s        *wardentest.Server
	key      string
	upstream *httptest.Server
	calls    atomic.Int64
}

func newGatewayFixture(t *testing.T, configure func(*config.Config)) *gatewayFixture {
	t.Helper()
	f := &gatewayFixture{}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer upstream-secret-123" {
			w.WriteHeader(401)
			return
		}
		f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"sent":true}`))
	}))
	t.Cleanup(f.upstream.Close)
	f.s = wardentest.StartServer(t, wardentest.ServerOptions{Configure: configure})
	root := f.s.Root
	if _, err := root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "mailer", Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	k, _ := root.CreateKey(ctx, "mailer", 0)
	f.key = k.Key
	status, _, _, body := call(t, f.s, "PUT", "/v1/connectors/mail", f.s.RootToken, "application/yaml", `apiVersion: warden/v1
kind: Connector
base_url: `+f.upstream.URL+`
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: messages.send, method: POST, path: /messages, class: write}
  - {id: messages.list, method: GET, path: /messages, class: read}
`)
	if status != 201 {
		t.Fatalf("connector: %d %s", status, body)
	}
	status, _, _, body = call(t, f.s, "POST", "/v1/credentials", f.s.RootToken, "application/json", `{"name":"mail-token","type":"bearer","connector":"mail","secret":{"token":"upstream-secret-123"}}`)
	if status != 201 || strings.Contains(body2s(body), "upstream-secret") {
		t.Fatalf("credential: %d %s", status, body)
	}
	if _, err := root.PutPolicy(ctx, "mailer", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{identity: mailer}]
rules:
  - {id: read, effect: allow, actions: ["mail:messages.list"]}
  - {id: send, effect: require_approval, actions: ["mail:messages.send"]}
`), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	return f
}

func body2s(b []byte) string { return string(b) }

func (f *gatewayFixture) send(t *testing.T, body, approvalID string, extra map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.s.URL+"/proxy/mail/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.key)
	req.Header.Set("Content-Type", "application/json")
	if approvalID != "" {
		req.Header.Set("Warden-Approval", approvalID)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestGovernedCallAndAudit(t *testing.T) {
	f := newGatewayFixture(t, nil)
	req, _ := http.NewRequest("GET", f.s.URL+"/proxy/mail/messages", nil)
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"sent":true}` || resp.Header.Get("Warden-Decision") != "allow" {
		t.Fatalf("allowed call: %d %s", resp.StatusCode, b)
	}
	// The audit log holds the decided and completed events, no secret. The
	// completed event is written after the agent has its answer.
	var status int
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		status, _, _, body = call(t, f.s, "GET", "/v1/audit?limit=50", f.s.RootToken, "", "")
		if strings.Contains(string(body), "operation.completed") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status != 200 || !strings.Contains(string(body), "operation.decided") || !strings.Contains(string(body), "operation.completed") {
		t.Fatalf("audit: %d %s", status, body)
	}
	if strings.Contains(string(body), "upstream-secret-123") || strings.Contains(string(body), f.key) {
		t.Fatal("secret in the audit log")
	}
}

func TestApprovalFlow(t *testing.T) {
	var hookMu sync.Mutex
	var hooks []*http.Request
	var hookBodies [][]byte
	var failFirst atomic.Bool
	failFirst.Store(true)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failFirst.CompareAndSwap(true, false) {
			w.WriteHeader(503) // the receiver is down once: retried
			return
		}
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hooks, hookBodies = append(hooks, r), append(hookBodies, b)
		hookMu.Unlock()
	}))
	defer hook.Close()
	f := newGatewayFixture(t, func(c *config.Config) {
		c.ApprovalWebhookURL = hook.URL
		c.ApprovalWebhookSecret = warden.NewSecret("hook-secret")
	})
	body := `{"to":"bob@example.com","subject":"hi"}`
	status, h, b := f.send(t, body, "", nil)
	var pending apitype.ApprovalPending
	_ = json.Unmarshal(b, &pending)
	if status != 202 || h.Get("Warden-Decision") != "require_approval" || pending.ApprovalID == "" || h.Get("Location") != "/v1/approvals/"+pending.ApprovalID {
		t.Fatalf("needs approval: %d %s %v", status, b, h)
	}
	if f.calls.Load() != 0 {
		t.Fatal("forwarded before approval")
	}
	// The agent polls its own approval.
	agent := f.s.Client(f.key)
	var got apitype.Approval
	if err := agent.Do(ctx, "GET", "/v1/approvals/"+pending.ApprovalID, nil, &got); err != nil || got.Status != "pending" {
		t.Fatalf("poll: %+v %v", got, err)
	}
	// Retrying with the pending approval does not pass.
	if status, _, _ := f.send(t, body, pending.ApprovalID, nil); status == 200 {
		t.Fatal("pending approval let the call through")
	}
	// The owner may not approve their own identity's request.
	alice, _ := f.s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "alice", Subject: "alice@example.com", Roles: []string{"approver"}})
	if err := f.s.Client(alice.Token).Do(ctx, "POST", "/v1/approvals/"+pending.ApprovalID+"/approve", apitype.ApprovalDecision{}, nil); problemCode(err) != "forbidden" {
		t.Fatalf("owner approving own identity: %v", err)
	}
	// An agent can never approve (admin route).
	if err := agent.Do(ctx, "POST", "/v1/approvals/"+pending.ApprovalID+"/approve", apitype.ApprovalDecision{}, nil); problemCode(err) != "forbidden" {
		t.Fatalf("agent approving: %v", err)
	}
	// Two approvers race: exactly one wins.
	bob, _ := f.s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "bob", Subject: "bob@example.com", Roles: []string{"approver"}})
	carol, _ := f.s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "carol", Subject: "carol@example.com", Roles: []string{"approver"}})
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for _, tok := range []string{bob.Token, carol.Token} {
		wg.Add(1)
		go func(tok string) {
			defer wg.Done()
			err := f.s.Client(tok).Do(ctx, "POST", "/v1/approvals/"+pending.ApprovalID+"/approve", apitype.ApprovalDecision{Comment: "ok"}, nil)
			switch problemCode(err) {
			case "":
				wins.Add(1)
			case "conflict":
				conflicts.Add(1)
			}
		}(tok)
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 1 {
		t.Fatalf("race: %d wins, %d conflicts", wins.Load(), conflicts.Load())
	}
	// A modified retry is refused; the identical retry passes exactly once.
	if status, _, b := f.send(t, `{"to":"everyone@example.com","subject":"hi"}`, pending.ApprovalID, nil); status != 403 || !strings.Contains(string(b), "approval_invalid") {
		t.Fatalf("modified retry: %d %s", status, b)
	}
	if status, _, b := f.send(t, body, pending.ApprovalID, nil); status != 200 || f.calls.Load() != 1 {
		t.Fatalf("approved retry: %d %s", status, b)
	}
	if status, _, b := f.send(t, body, pending.ApprovalID, nil); status != 403 || f.calls.Load() != 1 {
		t.Fatalf("second use: %d %s", status, b)
	}
	// The webhook got a signed, Slack-compatible message after a retry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		hookMu.Lock()
		n := len(hooks)
		hookMu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	hookMu.Lock()
	defer hookMu.Unlock()
	if len(hooks) == 0 {
		t.Fatal("no webhook delivered")
	}
	var payload approval.Payload
	if err := json.Unmarshal(hookBodies[0], &payload); err != nil || !strings.Contains(payload.Text, "mail:messages.send") {
		t.Fatalf("payload: %s", hookBodies[0])
	}
	if sig := hooks[0].Header.Get("X-Warden-Signature"); sig != approval.Sign(warden.NewSecret("hook-secret"), hooks[0].Header.Get("X-Warden-Timestamp"), hookBodies[0]) {
		t.Fatalf("bad signature %q", sig)
	}
}

func TestApprovalWaitDenyAndSuspension(t *testing.T) {
	f := newGatewayFixture(t, nil)
	body := `{"to":"x@example.com"}`
	// Prefer: wait holds the call until a human decides.
	type res struct {
		status int
		body   []byte
	}
	done := make(chan res, 1)
	go func() {
		status, _, b := f.send(t, body, "", map[string]string{"Prefer": "wait=20"})
		done <- res{status, b}
	}()
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		var l apitype.ApprovalList
		_ = f.s.Root.Do(ctx, "GET", "/v1/approvals?status=pending", nil, &l)
		if len(l.Approvals) > 0 {
			id = l.Approvals[0].ID
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("no pending approval appeared")
	}
	if err := f.s.Root.Do(ctx, "POST", "/v1/approvals/"+id+"/approve", apitype.ApprovalDecision{}, nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.status != 200 || f.calls.Load() != 1 {
		t.Fatalf("wait mode: %d %s", r.status, r.body)
	}
	// A denied request: the wait ends with 403.
	go func() {
		status, _, b := f.send(t, body, "", map[string]string{"Prefer": "wait=20"})
		done <- res{status, b}
	}()
	id = ""
	for id == "" {
		var l apitype.ApprovalList
		_ = f.s.Root.Do(ctx, "GET", "/v1/approvals?status=pending", nil, &l)
		if len(l.Approvals) > 0 {
			id = l.Approvals[0].ID
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = f.s.Root.Do(ctx, "POST", "/v1/approvals/"+id+"/deny", apitype.ApprovalDecision{Comment: "no"}, nil)
	if r := <-done; r.status != 403 || f.calls.Load() != 1 {
		t.Fatalf("denied wait: %d %s", r.status, r.body)
	}
	// Suspension kills pending approvals.
	_, _, b := f.send(t, body, "", nil)
	var p apitype.ApprovalPending
	_ = json.Unmarshal(b, &p)
	if _, err := f.s.Root.SetStatus(ctx, "mailer", "suspend", "incident"); err != nil {
		t.Fatal(err)
	}
	var a apitype.Approval
	_ = f.s.Root.Do(ctx, "GET", "/v1/approvals/"+p.ApprovalID, nil, &a)
	if a.Status != "expired" {
		t.Fatalf("approval of suspended identity: %s", a.Status)
	}
	if err := f.s.Root.Do(ctx, "POST", "/v1/approvals/"+p.ApprovalID+"/approve", apitype.ApprovalDecision{}, nil); problemCode(err) != "conflict" {
		t.Fatalf("approving expired: %v", err)
	}
	if _, err := f.s.Root.SetStatus(ctx, "mailer", "resume", ""); err != nil {
		t.Fatal(err)
	}
	// Flood: capped, then approval_quota.
	var last int
	for i := 0; i < 25; i++ {
		last, _, _ = f.send(t, body, "", nil)
	}
	if last != 429 {
		t.Fatalf("flood not capped: %d", last)
	}
}

func TestApprovalRuleSettings(t *testing.T) {
	f := newGatewayFixture(t, nil)
	if _, err := f.s.Root.PutPolicy(ctx, "mailer", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{identity: mailer}]
rules:
  - id: send
    effect: require_approval
    actions: ["mail:messages.send"]
    approval: {required: 2, approvers: [security, carol@example.com], uses: 2, ttl: 10m}
`), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	body := `{"to":"a@example.com"}`
	_, _, b := f.send(t, body, "", nil)
	var p apitype.ApprovalPending
	_ = json.Unmarshal(b, &p)
	if time.Until(p.ExpiresAt) > 11*time.Minute {
		t.Fatalf("rule ttl ignored: %s", p.ExpiresAt)
	}
	tok := func(name, subject string, roles ...string) string {
		at, err := f.s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: name, Subject: subject, Roles: roles})
		if err != nil {
			t.Fatal(err)
		}
		return at.Token
	}
	approver := tok("dave", "dave@example.com", "approver") // not named by the rule
	sec := tok("erin", "erin@example.com", "security")
	carol := tok("carol", "carol@example.com", "auditor")
	approve := func(token string) error {
		return f.s.Client(token).Do(ctx, "POST", "/v1/approvals/"+p.ApprovalID+"/approve", apitype.ApprovalDecision{}, nil)
	}
	if err := approve(approver); problemCode(err) != "forbidden" {
		t.Fatalf("unnamed approver: %v", err)
	}
	if err := approve(sec); err != nil {
		t.Fatal(err)
	}
	if err := approve(sec); problemCode(err) != "conflict" {
		t.Fatalf("same approver twice: %v", err)
	}
	var a apitype.Approval
	_ = f.s.Root.Do(ctx, "GET", "/v1/approvals/"+p.ApprovalID, nil, &a)
	if a.Status != "pending" || len(a.ApprovedBy) != 1 || a.Required != 2 {
		t.Fatalf("after one of two: %+v", a)
	}
	if status, _, _ := f.send(t, body, p.ApprovalID, nil); status == 200 {
		t.Fatal("one approval of two let the call through")
	}
	if err := approve(carol); err != nil {
		t.Fatal(err)
	}
	// Two uses, then no more.
	for i := 0; i < 2; i++ {
		if status, _, b := f.send(t, body, p.ApprovalID, nil); status != 200 {
			t.Fatalf("use %d: %d %s", i+1, status, b)
		}
	}
	if status, _, _ := f.send(t, body, p.ApprovalID, nil); status != 403 {
		t.Fatalf("third use: %d", status)
	}
	// Bad settings are refused at save time.
	status, _, prob, _ := call(t, f.s, "PUT", "/v1/policies/bad", f.s.RootToken, "application/yaml", `apiVersion: warden/v1
kind: Policy
subjects: [{identity: mailer}]
rules:
  - {id: r, effect: allow, actions: ["a:b"], approval: {required: 2}}
`)
	if status != 400 || !strings.Contains(prob.Field+prob.Detail, "approval") {
		t.Fatalf("approval on allow rule: %d %+v", status, prob)
	}
}
