package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const basePolicy = `apiVersion: warden/v1
kind: Policy
name: a-base
subjects:
  - identity: bot
  - selector: {type: ai_agent, labels: {team: support}}
rules:
  - {id: read, effect: allow, actions: ["crm:contacts.get", "crm:contacts.list"]}
  - {id: any-gmail, effect: allow, actions: ["gmail:*"]}
  - {id: admin-deny, effect: deny, actions: ["*:admin.*"]}
  - {id: crm-delete, effect: deny, actions: ["crm:*.delete"]}
  - {id: big-payment, effect: require_approval, actions: ["pay:charge"], when: 'params.amount > 1000'}
  - {id: pay, effect: allow, actions: ["pay:charge"]}
  - {id: public-read, effect: allow, actions: ["files:read"], when: 'params.path.startsWith("/public/")'}
  - {id: etc-deny, effect: deny, actions: ["files:write"], when: 'params.path.startsWith("/etc/")'}
  - {id: files-write, effect: allow, actions: ["files:write"]}
  - {id: january, effect: allow, actions: ["db:select"], not_before: "2026-01-01T00:00:00Z", expires_at: "2026-02-01T00:00:00Z"}
  - {id: empty-runs, effect: allow, actions: ["x*:*y"]}
  - {id: github-org, effect: deny, actions: ["github:*"], when: '!globMatch(resource.repo, "acme/*")'}
  - {id: github, effect: allow, actions: ["github:issues.create"]}
`

const otherPolicy = `apiVersion: warden/v1
kind: Policy
name: b-other
subjects: [{identity: bot}, {identity: nhi_byid}]
rules:
  - {id: misc, effect: allow, actions: ["*"], when: 'action.connector == "misc"'}
  - {id: also-admin-deny, effect: deny, actions: ["gmail:admin.*"]}
`

const globalPolicy = `apiVersion: warden/v1
kind: Policy
name: z-global
subjects: [{selector: {}}]
rules:
  - id: env-isolation
    effect: deny
    actions: ["*"]
    when: 'identity.environment == "staging" && action.connector.startsWith("prod-")'
  - {id: staging-db, effect: allow, actions: ["staging-db:*", "prod-db:*"]}
`

var (
	bot     = Identity{ID: "nhi_bot", Name: "bot", Type: "service", Environment: "prod"}
	staging = Identity{ID: "nhi_stg", Name: "stg-agent", Type: "ai_agent", Environment: "staging", Labels: map[string]string{"team": "support"}}
	byID    = Identity{ID: "nhi_byid", Name: "renamed"}
	jan15   = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
)

func newTestEngine(t testing.TB, now time.Time, srcs ...string) *Engine {
	t.Helper()
	e := NewEngine(Options{Now: func() time.Time { return now }})
	var ps []*Policy
	for _, s := range srcs {
		ps = append(ps, mustPolicy(t, s))
	}
	e.Replace(ps)
	return e
}

func TestDecideTable(t *testing.T) {
	e := newTestEngine(t, jan15, basePolicy, otherPolicy, globalPolicy)
	type want struct {
		effect         Effect
		code           Code
		policy, rule   string
		matched        string // "policy/rule,..." when checked
		reasonContains string
	}
	cases := []struct {
		name   string
		req    Request
		expect want
	}{
		{"exact allow", Request{Identity: bot, Action: "crm:contacts.get"}, want{Allow, CodeAllowed, "a-base", "read", "a-base/read", `allowed by rule "read" of policy "a-base"`}},
		{"pattern deny crm:*.delete", Request{Identity: bot, Action: "crm:contacts.delete"}, want{Deny, CodeDenied, "a-base", "crm-delete", "", ""}},
		{"crm:*.delete needs the dot", Request{Identity: bot, Action: "crm:delete"}, want{Deny, CodeNoMatchingPolicy, "", "", "", "no policy rule allows"}},
		{"deny overrides allow", Request{Identity: bot, Action: "gmail:admin.users"}, want{Deny, CodeDenied, "a-base", "admin-deny", "a-base/any-gmail,a-base/admin-deny,b-other/also-admin-deny", ""}},
		{"*:admin.* any connector", Request{Identity: bot, Action: "zoom:admin.x"}, want{Deny, CodeDenied, "a-base", "admin-deny", "", ""}},
		{"*:admin.* needs admin. prefix", Request{Identity: bot, Action: "zoom:admins"}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"gmail:* allows", Request{Identity: bot, Action: "gmail:messages.send"}, want{Allow, CodeAllowed, "a-base", "any-gmail", "", ""}},
		{"approval required", Request{Identity: bot, Action: "pay:charge", Params: map[string]any{"amount": 5000}}, want{RequireApproval, CodeApprovalRequired, "a-base", "big-payment", "a-base/big-payment,a-base/pay", ""}},
		{"approval granted", Request{Identity: bot, Action: "pay:charge", Params: map[string]any{"amount": 5000.0}, Approved: true}, want{Allow, CodeAllowed, "a-base", "big-payment", "", "approval"}},
		{"below approval threshold (double)", Request{Identity: bot, Action: "pay:charge", Params: map[string]any{"amount": 1000.0}}, want{Allow, CodeAllowed, "a-base", "pay", "", ""}},
		{"above threshold (int64)", Request{Identity: bot, Action: "pay:charge", Params: map[string]any{"amount": int64(1001)}}, want{RequireApproval, CodeApprovalRequired, "a-base", "big-payment", "", ""}},
		{"above threshold (fraction)", Request{Identity: bot, Action: "pay:charge", Params: map[string]any{"amount": 1000.5}}, want{RequireApproval, CodeApprovalRequired, "a-base", "big-payment", "", ""}},
		{"approval rule errors: fail closed", Request{Identity: bot, Action: "pay:charge"}, want{RequireApproval, CodeApprovalRequired, "a-base", "big-payment", "", "no such key"}},
		{"approved does not beat deny", Request{Identity: bot, Action: "crm:x.delete", Approved: true}, want{Deny, CodeDenied, "a-base", "crm-delete", "", ""}},
		{"missing key on allow: policy_error", Request{Identity: bot, Action: "files:read"}, want{Deny, CodePolicyError, "a-base", "public-read", "", "no such key: path"}},
		{"condition true", Request{Identity: bot, Action: "files:read", Params: map[string]any{"path": "/public/a"}}, want{Allow, CodeAllowed, "a-base", "public-read", "", ""}},
		{"condition false: no match", Request{Identity: bot, Action: "files:read", Params: map[string]any{"path": "/secret"}}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"erroring deny matches", Request{Identity: bot, Action: "files:write"}, want{Deny, CodeDenied, "a-base", "etc-deny", "", "failed to evaluate"}},
		{"deny by argument", Request{Identity: bot, Action: "files:write", Params: map[string]any{"path": "/etc/passwd"}}, want{Deny, CodeDenied, "a-base", "etc-deny", "", ""}},
		{"deny false, allow", Request{Identity: bot, Action: "files:write", Params: map[string]any{"path": "/tmp/x"}}, want{Allow, CodeAllowed, "a-base", "files-write", "", ""}},
		{"repo in org", Request{Identity: bot, Action: "github:issues.create", Resource: map[string]any{"repo": "acme/api"}}, want{Allow, CodeAllowed, "a-base", "github", "", ""}},
		{"repo outside org", Request{Identity: bot, Action: "github:issues.create", Resource: map[string]any{"repo": "evil/api"}}, want{Deny, CodeDenied, "a-base", "github-org", "", ""}},
		{"empty runs x*:*y", Request{Identity: bot, Action: "x:y"}, want{Allow, CodeAllowed, "a-base", "empty-runs", "", ""}},
		{"runs x*:*y", Request{Identity: bot, Action: "xa.b:c.y"}, want{Allow, CodeAllowed, "a-base", "empty-runs", "", ""}},
		{"x*:*y mismatch", Request{Identity: bot, Action: "ax:y"}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"star alone with condition", Request{Identity: bot, Action: "misc:anything"}, want{Allow, CodeAllowed, "b-other", "misc", "", ""}},
		{"subject by id", Request{Identity: byID, Action: "misc:x"}, want{Allow, CodeAllowed, "b-other", "misc", "", ""}},
		{"selector subject", Request{Identity: staging, Action: "crm:contacts.list"}, want{Allow, CodeAllowed, "a-base", "read", "", ""}},
		{"selector needs all labels", Request{Identity: Identity{ID: "nhi_x", Name: "x", Type: "ai_agent", Labels: map[string]string{"team": "sales"}}, Action: "crm:contacts.list"}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"environment isolation", Request{Identity: staging, Action: "prod-db:select"}, want{Deny, CodeDenied, "z-global", "env-isolation", "", ""}},
		{"staging to staging", Request{Identity: staging, Action: "staging-db:select"}, want{Allow, CodeAllowed, "z-global", "staging-db", "", ""}},
		{"prod identity to prod", Request{Identity: bot, Action: "prod-db:select"}, want{Allow, CodeAllowed, "z-global", "staging-db", "", ""}},
		{"unknown identity", Request{Identity: Identity{ID: "nhi_new", Name: "new"}, Action: "crm:contacts.get"}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"grant active", Request{Identity: bot, Action: "db:select", Time: jan15}, want{Allow, CodeAllowed, "a-base", "january", "", ""}},
		{"grant from not_before inclusive", Request{Identity: bot, Action: "db:select", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, want{Allow, CodeAllowed, "a-base", "january", "", ""}},
		{"grant before not_before", Request{Identity: bot, Action: "db:select", Time: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"grant expired at expires_at", Request{Identity: bot, Action: "db:select", Time: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}, want{Deny, CodeNoMatchingPolicy, "", "", "", ""}},
		{"grant expires by engine clock", Request{Identity: bot, Action: "db:select"}, want{Allow, CodeAllowed, "a-base", "january", "", ""}},
		{"malformed action", Request{Identity: bot, Action: "Gmail:Send"}, want{Deny, CodePolicyError, "", "", "", "malformed action"}},
		{"action with two colons", Request{Identity: bot, Action: "a:b:c"}, want{Deny, CodePolicyError, "", "", "", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			d := e.Decide(context.Background(), &req)
			w := tc.expect
			if d.Effect != w.effect || d.Code != w.code || d.Policy != w.policy || d.Rule != w.rule {
				t.Fatalf("got %s/%s by %q/%q (%s); want %s/%s by %q/%q", d.Effect, d.Code, d.Policy, d.Rule, d.Reason, w.effect, w.code, w.policy, w.rule)
			}
			if w.matched != "" {
				var got []string
				for _, m := range d.Matched {
					got = append(got, m.Policy+"/"+m.Rule)
				}
				if strings.Join(got, ",") != w.matched {
					t.Fatalf("matched %v, want %s", got, w.matched)
				}
			}
			if !strings.Contains(d.Reason, w.reasonContains) {
				t.Fatalf("reason %q does not contain %q", d.Reason, w.reasonContains)
			}
		})
	}
}

func TestDecidingRuleIsFirstByPolicyNameThenRuleOrder(t *testing.T) {
	mk := func(name string, rules string) string {
		return "apiVersion: warden/v1\nkind: Policy\nname: " + name + "\nsubjects: [{identity: bot}]\nrules:\n" + rules
	}
	// Put in an order that differs from name order.
	e := newTestEngine(t, jan15,
		mk("zeta", "  - {id: z1, effect: deny, actions: [a:b]}\n"),
		mk("alpha", "  - {id: a2, effect: allow, actions: [a:c]}\n  - {id: a1, effect: deny, actions: ['a:*']}\n  - {id: a0, effect: deny, actions: [a:b]}\n"),
		mk("mid", "  - {id: m1, effect: allow, actions: [a:c]}\n"),
	)
	d := e.Decide(context.Background(), &Request{Identity: bot, Action: "a:b"})
	if d.Policy != "alpha" || d.Rule != "a1" {
		t.Fatalf("deciding rule %s/%s, want alpha/a1", d.Policy, d.Rule)
	}
	if len(d.Matched) != 3 || d.Matched[1].Rule != "a0" || d.Matched[2].Policy != "zeta" {
		t.Fatalf("matched %+v", d.Matched)
	}
	d = e.Decide(context.Background(), &Request{Identity: bot, Action: "a:c"})
	if d.Code != CodeDenied || d.Rule != "a1" {
		t.Fatalf("a:c: %+v", d)
	}
}

func TestTimeZones(t *testing.T) {
	p := `apiVersion: warden/v1
kind: Policy
name: hours
subjects: [{identity: bot}]
rules:
  - id: business-hours
    effect: allow
    actions: ["gmail:*"]
    when: 'request.time.getHours("Europe/Berlin") >= 9 && request.time.getHours("Europe/Berlin") < 17'
  - id: weekdays
    effect: allow
    actions: ["crm:*"]
    when: 'request.time.getDayOfWeek("Europe/Berlin") >= 1 && request.time.getDayOfWeek("Europe/Berlin") <= 5'
  - id: la-date
    effect: allow
    actions: ["cal:*"]
    when: 'request.time.getDate("America/Los_Angeles") == 1'
`
	e := newTestEngine(t, jan15, p)
	cases := []struct {
		action string
		at     string
		allow  bool
	}{
		{"gmail:send", "2026-03-02T07:59:59Z", false}, // 08:59:59 CET
		{"gmail:send", "2026-03-02T08:00:00Z", true},  // 09:00 CET
		{"gmail:send", "2026-03-02T15:59:59Z", true},  // 16:59:59 CET
		{"gmail:send", "2026-03-02T16:00:00Z", false}, // 17:00 CET
		// DST starts 2026-03-29 01:00 UTC: 07:00 UTC is 08:00 CET the day before, 09:00 CEST that day.
		{"gmail:send", "2026-03-28T07:00:00Z", false},
		{"gmail:send", "2026-03-29T07:00:00Z", true},
		// DST ends 2026-10-25 01:00 UTC: 16:30 UTC is 18:30 CEST the day before, 17:30 CET that day; 15:30 UTC is 16:30 CET.
		{"gmail:send", "2026-10-24T15:30:00Z", false},
		{"gmail:send", "2026-10-25T15:30:00Z", true},
		// Around midnight: Friday 2026-03-06 23:30 Berlin is 22:30 UTC; 00:30 Saturday is 23:30 UTC.
		{"crm:get", "2026-03-06T22:30:00Z", true},
		{"crm:get", "2026-03-06T23:30:00Z", false},
		{"crm:get", "2026-03-08T23:00:00Z", true}, // Monday 00:00 Berlin
		// LA is behind UTC: 2026-04-01T06:59Z is still March 31 there.
		{"cal:x", "2026-04-01T06:59:00Z", false},
		{"cal:x", "2026-04-01T07:00:00Z", true},
		// A request time given with an offset means the same instant.
		{"gmail:send", "2026-03-02T09:00:00+01:00", true},
	}
	for _, tc := range cases {
		at, err := time.Parse(time.RFC3339, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		d := e.Decide(context.Background(), &Request{Identity: bot, Action: tc.action, Time: at})
		if (d.Effect == Allow) != tc.allow {
			t.Errorf("%s at %s: got %s (%s)", tc.action, tc.at, d.Code, d.Reason)
		}
	}
}

func TestCELFunctions(t *testing.T) {
	p := `apiVersion: warden/v1
kind: Policy
name: fns
subjects: [{identity: bot}]
rules:
  - {id: cidr, effect: allow, actions: ["net:a"], when: 'inCidr(request.ip, "10.0.0.0/8") || inCidr(request.ip, "2001:db8::/32")'}
  - {id: email, effect: allow, actions: ["mail:a"], when: 'params.to.all(x, emailDomain(x) == "acme.com")'}
  - {id: glob, effect: allow, actions: ["glob:a"], when: 'globMatch(params.path, "/data/*.csv") && globMatch(params.name, "v?")'}
  - {id: mixed, effect: allow, actions: ["num:a"], when: 'params.n == 3 && params.f >= 2 && params.f < 2.5'}
`
	e := newTestEngine(t, jan15, p)
	cases := []struct {
		action string
		ip     string
		params map[string]any
		code   Code
	}{
		{"net:a", "10.1.2.3", nil, CodeAllowed},
		{"net:a", "11.1.2.3", nil, CodeNoMatchingPolicy},
		{"net:a", "2001:db8::1", nil, CodeAllowed},
		{"net:a", "::ffff:10.0.0.1", nil, CodeAllowed},
		{"net:a", "not-an-ip", nil, CodePolicyError},
		{"mail:a", "", map[string]any{"to": []any{"a@ACME.com", "b@x@acme.com"}}, CodeAllowed},
		{"mail:a", "", map[string]any{"to": []any{"a@acme.com", "b@evil.com"}}, CodeNoMatchingPolicy},
		{"mail:a", "", map[string]any{"to": []any{"no-at-sign"}}, CodePolicyError},
		{"glob:a", "", map[string]any{"path": "/data/x/y.csv", "name": "v1"}, CodeAllowed},
		{"glob:a", "", map[string]any{"path": "/data/y.json", "name": "v1"}, CodeNoMatchingPolicy},
		{"glob:a", "", map[string]any{"path": "/data/y.csv", "name": "v12"}, CodeNoMatchingPolicy},
		{"glob:a", "", map[string]any{"path": "/data/y.csv", "name": "vé"}, CodeAllowed},
		{"num:a", "", map[string]any{"n": 3.0, "f": 2}, CodeAllowed},
		{"num:a", "", map[string]any{"n": int64(3), "f": 2.4}, CodeAllowed},
		{"num:a", "", map[string]any{"n": uint(3), "f": 2.5}, CodeNoMatchingPolicy},
	}
	for _, tc := range cases {
		d := e.Decide(context.Background(), &Request{Identity: bot, Action: tc.action, IP: tc.ip, Params: tc.params})
		if d.Code != tc.code {
			t.Errorf("%s %s %v: got %s (%s), want %s", tc.action, tc.ip, tc.params, d.Code, d.Reason, tc.code)
		}
	}
}

func TestCostBudgetAtDecision(t *testing.T) {
	p := `apiVersion: warden/v1
kind: Policy
name: loops
subjects: [{identity: bot}]
rules:
  - {id: allow-loop, effect: allow, actions: ["a:allow"], when: 'params.l.all(x, x >= 0)'}
  - {id: deny-loop, effect: deny, actions: ["a:deny"], when: 'params.l.exists(x, x < 0)'}
  - {id: fallback, effect: allow, actions: ["a:deny"]}
`
	e := newTestEngine(t, jan15, p)
	small := map[string]any{"l": []any{1, 2, 3}}
	if d := e.Decide(context.Background(), &Request{Identity: bot, Action: "a:allow", Params: small}); d.Code != CodeAllowed {
		t.Fatalf("small list: %+v", d)
	}
	big := make([]any, 1_000_000)
	for i := range big {
		big[i] = i
	}
	huge := map[string]any{"l": big}
	d := e.Decide(context.Background(), &Request{Identity: bot, Action: "a:allow", Params: huge})
	if d.Code != CodePolicyError || !strings.Contains(d.Reason, "cost") {
		t.Fatalf("allow over budget: %s %s", d.Code, d.Reason)
	}
	d = e.Decide(context.Background(), &Request{Identity: bot, Action: "a:deny", Params: huge})
	if d.Code != CodeDenied || d.Rule != "deny-loop" {
		t.Fatalf("deny over budget must fail closed: %s %s", d.Code, d.Reason)
	}
	// A cancelled request context stops evaluation the same way.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := e.Decide(ctx, &Request{Identity: bot, Action: "a:allow", Params: small}); d.Code != CodePolicyError {
		t.Fatalf("cancelled allow: %+v", d)
	}
	if d := e.Decide(ctx, &Request{Identity: bot, Action: "a:deny", Params: small}); d.Code != CodeDenied {
		t.Fatalf("cancelled deny: %+v", d)
	}
}

func TestExplain(t *testing.T) {
	e := newTestEngine(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), basePolicy)
	d := e.Decide(context.Background(), &Request{Identity: bot, Action: "db:select", Explain: true})
	if d.Code != CodeNoMatchingPolicy {
		t.Fatalf("%+v", d)
	}
	results := map[string]string{}
	for _, tr := range d.Trace {
		results[tr.Rule] = tr.Result
	}
	if len(d.Trace) != 13 || results["january"] != TraceExpired || results["read"] != TraceActionMismatch {
		t.Fatalf("trace %+v", d.Trace)
	}
	d = e.Decide(context.Background(), &Request{Identity: bot, Action: "files:read", Params: map[string]any{"path": "/x"}, Explain: true})
	for _, tr := range d.Trace {
		if tr.Rule == "public-read" && tr.Result != TraceConditionFalse {
			t.Fatalf("public-read: %+v", tr)
		}
	}
	// Explain never changes the decision.
	plain := e.Decide(context.Background(), &Request{Identity: bot, Action: "files:write"})
	expl := e.Decide(context.Background(), &Request{Identity: bot, Action: "files:write", Explain: true})
	if plain.Code != expl.Code || plain.Rule != expl.Rule || plain.Trace != nil || expl.Trace == nil {
		t.Fatalf("explain changed the decision: %+v vs %+v", plain, expl)
	}
}

func TestSnapshotSwapIsAtomic(t *testing.T) {
	allowAll := mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: bot}]\nrules:\n  - {id: a, effect: allow, actions: ['*']}\n  - {id: b, effect: allow, actions: ['x:y']}\n")
	denyAll := mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: bot}]\nrules:\n  - {id: a, effect: deny, actions: ['*']}\n  - {id: b, effect: deny, actions: ['x:y']}\n")
	e := NewEngine(Options{})
	e.Put(allowAll)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d := e.Decide(context.Background(), &Request{Identity: bot, Action: "x:y"})
				// Both rules of one version match; a half-applied change would mix effects.
				if len(d.Matched) != 2 || d.Matched[0].Effect != d.Matched[1].Effect {
					bad.Add(1)
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			e.Put(denyAll)
		} else {
			e.Replace([]*Policy{allowAll})
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d decisions saw a mixed snapshot", bad.Load())
	}
	if !e.Delete("p") || e.Delete("p") {
		t.Fatal("Delete")
	}
	if d := e.Decide(context.Background(), &Request{Identity: bot, Action: "x:y"}); d.Code != CodeNoMatchingPolicy {
		t.Fatalf("after delete: %+v", d)
	}
}

func TestFailedCompileLeavesPreviousVersion(t *testing.T) {
	e := newTestEngine(t, jan15, basePolicy)
	bad := strings.Replace(basePolicy, "effect: deny", "effect: block", 1)
	doc, err := Parse([]byte(bad), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(doc); err == nil {
		t.Fatal("bad policy compiled")
	}
	// The caller only Puts what compiled: the old version still decides.
	if d := e.Decide(context.Background(), &Request{Identity: bot, Action: "crm:a.delete"}); d.Code != CodeDenied {
		t.Fatalf("%+v", d)
	}
	if got := fmt.Sprint(len(e.Policies())); got != "1" {
		t.Fatal(got)
	}
}
