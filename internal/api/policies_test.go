package api_test

import (
	"strings"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/wardentest"
)

const supportPolicy = `apiVersion: warden/v1
kind: Policy
name: support-agent
description: Support agent reads the CRM and emails customers
# a comment that must survive the round trip
subjects:
  - identity: support-agent
rules:
  - id: read-crm
    effect: allow
    actions: ["crm:contacts.get", "crm:contacts.list"]
  - id: email
    effect: allow
    actions: ["gmail:messages.send"]
    limit: {count: 2, per: 1h}
  - id: bulk-email-needs-a-human
    effect: require_approval
    actions: ["gmail:messages.send"]
    when: 'size(params.to) > 10'
  - id: never-delete
    effect: deny
    actions: ["crm:*.delete"]
`

func TestPolicyAPI(t *testing.T) {
	wardentest.EngineServers(t, func(t *testing.T, s *wardentest.Server) {
		if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "support-agent", Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
			t.Fatal(err)
		}
		p, err := s.Root.PutPolicy(ctx, "support-agent", []byte(supportPolicy), "application/yaml")
		if err != nil || p.Version != 1 {
			t.Fatalf("put: %+v %v", p, err)
		}
		got, err := s.Root.GetPolicy(ctx, "support-agent", "")
		if err != nil || string(got) != supportPolicy {
			t.Fatalf("round trip: %v\n%s", err, got)
		}
		asJSON, err := s.Root.GetPolicy(ctx, "support-agent", "application/json")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(asJSON)), "{") || !strings.Contains(string(asJSON), `"never-delete"`) {
			t.Fatalf("as json: %v %s", err, asJSON)
		}

		ask := func(action string, params map[string]any) *apitype.Decision {
			t.Helper()
			d, err := s.Root.Authorize(ctx, apitype.AuthorizeRequest{Identity: "support-agent", Action: action, Params: params})
			if err != nil {
				t.Fatalf("authorize %s: %v", action, err)
			}
			return d
		}
		for _, c := range []struct {
			action string
			params map[string]any
			want   string
			code   string
			rule   string
		}{
			{"crm:contacts.get", nil, "allow", "allowed", "read-crm"},
			{"crm:contacts.delete", nil, "deny", "denied", "never-delete"},
			{"crm:contacts.update", nil, "deny", "no_matching_policy", ""},
			{"gmail:messages.send", map[string]any{"to": make([]any, 11)}, "require_approval", "approval_required", "bulk-email-needs-a-human"},
			{"gmail:messages.send", map[string]any{"to": []any{"a@example.com"}}, "allow", "allowed", "email"},
			{"gmail:messages.send", map[string]any{"to": []any{"a@example.com"}}, "allow", "allowed", "email"},
			{"gmail:messages.send", map[string]any{"to": []any{"a@example.com"}}, "deny", "rate_limited", "email"},
		} {
			d := ask(c.action, c.params)
			if d.Decision != c.want || d.Code != c.code || d.Rule != c.rule {
				t.Errorf("%s: got %s/%s/%s, want %s/%s/%s (%s)", c.action, d.Decision, d.Code, d.Rule, c.want, c.code, c.rule, d.Reason)
			}
			if d.Code == "rate_limited" && d.RetryAfter <= 0 {
				t.Errorf("rate limited without retry_after")
			}
		}
		// Missing params: the require_approval condition errors and fails
		// closed (it matches).
		if d := ask("gmail:messages.send", nil); d.Decision != "require_approval" {
			t.Errorf("erroring require_approval must match: %+v", d)
		}

		// A broken replacement is refused with the rule named; v1 stays.
		bad := strings.Replace(supportPolicy, `size(params.to) > 10`, `size(params.to) > `, 1)
		status, _, prob, body := call(t, s, "PUT", "/v1/policies/support-agent", s.RootToken, "application/yaml", bad)
		if status != 400 || prob.Code != "invalid" || !strings.Contains(prob.Field+prob.Detail, "rules[2]") {
			t.Fatalf("bad CEL: %d %s", status, body)
		}
		if d := ask("crm:contacts.get", nil); d.Decision != "allow" {
			t.Fatal("failed replacement changed what is in force")
		}
		for name, doc := range map[string]string{
			"unknown key":   supportPolicy + "extra: 1\n",
			"unknown var":   strings.Replace(supportPolicy, `size(params.to) > 10`, `secrets.x == 1`, 1),
			"not bool":      strings.Replace(supportPolicy, `size(params.to) > 10`, `size(params.to)`, 1),
			"dup rule":      strings.Replace(supportPolicy, "id: email\n", "id: read-crm\n", 1),
			"bad effect":    strings.Replace(supportPolicy, "effect: deny", "effect: maybe", 1),
			"bad pattern":   strings.Replace(supportPolicy, `"crm:*.delete"`, `"crmdelete"`, 1),
			"name mismatch": strings.Replace(supportPolicy, "name: support-agent", "name: other", 1),
			"no apiVersion": strings.Replace(supportPolicy, "apiVersion: warden/v1\n", "", 1),
			"bad tz":        strings.Replace(supportPolicy, `size(params.to) > 10`, `request.time.getHours(\"Mars/Olympus\") > 1`, 1),
		} {
			status, _, prob, body := call(t, s, "PUT", "/v1/policies/support-agent", s.RootToken, "application/yaml", doc)
			if status != 400 || prob.Code != "invalid" {
				t.Errorf("%s: %d %s", name, status, body)
			}
		}
		status, _, prob, _ = call(t, s, "PUT", "/v1/policies/support-agent", s.RootToken, "text/plain", supportPolicy)
		if status != 400 {
			t.Errorf("text/plain: %d %s", status, prob.Code)
		}

		// Re-applying keeps the limit counters; versions are recorded.
		if p, err := s.Root.PutPolicy(ctx, "support-agent", []byte(supportPolicy), "application/yaml"); err != nil || p.Version != 2 {
			t.Fatalf("reapply: %+v %v", p, err)
		}
		if d := ask("gmail:messages.send", map[string]any{"to": []any{"x@example.com"}}); d.Code != "rate_limited" {
			t.Errorf("re-applying reset the limit: %+v", d)
		}

		// Identity status comes before policy.
		if _, err := s.Root.SetStatus(ctx, "support-agent", "suspend", "test"); err != nil {
			t.Fatal(err)
		}
		if d := ask("crm:contacts.get", nil); d.Code != "identity_suspended" || d.Decision != "deny" {
			t.Errorf("suspended: %+v", d)
		}
		d, err := s.Root.Authorize(ctx, apitype.AuthorizeRequest{Identity: "nobody", Action: "crm:contacts.get"})
		if err != nil || d.Code != "unknown_identity" {
			t.Errorf("unknown identity: %+v %v", d, err)
		}
		// Malformed questions are 400.
		for _, body := range []string{`{"identity":"support-agent","action":"nocolon"}`, `{"action":"a:b"}`, `{"identity":"x","action":"a:b","request":{"ip":"999.1.1.1"}}`} {
			if status, _, prob, _ := call(t, s, "POST", "/v1/authorize", s.RootToken, "application/json", body); status != 400 {
				t.Errorf("malformed %s: %d %s", body, status, prob.Code)
			}
		}

		// Delete: no policy, no access. History stays.
		if err := s.Root.DeletePolicy(ctx, "support-agent"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Root.SetStatus(ctx, "support-agent", "resume", ""); err != nil {
			t.Fatal(err)
		}
		if d := ask("crm:contacts.get", nil); d.Code != "no_matching_policy" {
			t.Errorf("after delete: %+v", d)
		}
		status, _, _, body = call(t, s, "GET", "/v1/policies/support-agent/versions", s.RootToken, "", "")
		if status != 200 || strings.Count(string(body), `"version"`) != 3 {
			t.Errorf("versions: %d %s", status, body)
		}
	})
}

func TestAuthorizeAsIdentity(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	for _, n := range []string{"me", "other"} {
		if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: n, Type: "bot", Owner: "o@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Root.PutPolicy(ctx, "p", []byte(`{"apiVersion":"warden/v1","kind":"Policy","subjects":[{"identity":"me"}],"rules":[{"id":"r","effect":"allow","actions":["svc:*"],"when":"inCidr(request.ip, \"127.0.0.0/8\")"}]}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	k, _ := s.Root.CreateKey(ctx, "me", 0)
	me := s.Client(k.Key)
	d, err := me.Authorize(ctx, apitype.AuthorizeRequest{Identity: "me", Action: "svc:op"})
	if err != nil || d.Decision != "allow" {
		t.Fatalf("self (ip from the connection): %+v %v", d, err)
	}
	if _, err := me.Authorize(ctx, apitype.AuthorizeRequest{Identity: "other", Action: "svc:op"}); problemCode(err) != "forbidden" {
		t.Fatalf("asking about another: %v", err)
	}
	future := time.Now().Add(24 * time.Hour)
	if _, err := me.Authorize(ctx, apitype.AuthorizeRequest{Identity: "me", Action: "svc:op", Request: &apitype.RequestContext{Time: &future}}); problemCode(err) != "invalid" {
		t.Fatalf("identity asking about another time: %v", err)
	}
	// The admin's what-if from another address.
	d, err = s.Root.Authorize(ctx, apitype.AuthorizeRequest{Identity: "me", Action: "svc:op", Request: &apitype.RequestContext{IP: "10.0.0.1"}, Explain: true})
	if err != nil || d.Decision != "deny" || len(d.Trace) == 0 {
		t.Fatalf("what-if: %+v %v", d, err)
	}
}
