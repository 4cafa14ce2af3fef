package policy

import (
	"strings"
	"testing"
)

// ruleDoc wraps rule YAML (indented as a list item under rules) in a document.
func ruleDoc(rules string) string {
	return "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: bot}]\nrules:\n" + rules
}

func TestCompileRejects(t *testing.T) {
	cases := []struct {
		name, rules, field, msg string
	}{
		{"unknown effect", "  - {id: r, effect: permit, actions: [a:b]}\n", "rules[0].effect", `unknown effect "permit"`},
		{"missing effect", "  - {id: r, actions: [a:b]}\n", "rules[0].effect", "effect is required"},
		{"missing id", "  - {effect: allow, actions: [a:b]}\n", "rules[0].id", "needs an id"},
		{"duplicate ids", "  - {id: r, effect: allow, actions: [a:b]}\n  - {id: r, effect: deny, actions: [a:c]}\n", "rules[1].id", "duplicate rule id"},
		{"empty actions", "  - {id: r, effect: allow, actions: []}\n", "rules[0].actions", "at least one"},
		{"no actions", "  - {id: r, effect: allow}\n", "rules[0].actions", "at least one"},
		{"pattern without colon", "  - {id: r, effect: allow, actions: [gmail]}\n", "rules[0].actions[0]", "connector:operation"},
		{"pattern two colons", "  - {id: r, effect: allow, actions: ['a:b:c']}\n", "rules[0].actions[0]", "more than one"},
		{"pattern empty op", "  - {id: r, effect: allow, actions: ['gmail:']}\n", "rules[0].actions[0]", "non-empty"},
		{"pattern upper case", "  - {id: r, effect: allow, actions: ['Gmail:send']}\n", "rules[0].actions[0]", "lowercase"},
		{"pattern empty", "  - {id: r, effect: allow, actions: ['']}\n", "rules[0].actions[0]", "must not be empty"},
		{"bad not_before", "  - {id: r, effect: allow, actions: [a:b], not_before: tomorrow}\n", "rules[0].not_before", "RFC 3339"},
		{"bad expires_at", "  - {id: r, effect: allow, actions: [a:b], expires_at: '2026-13-01T00:00:00Z'}\n", "rules[0].expires_at", "RFC 3339"},
		{"window never open", "  - {id: r, effect: allow, actions: [a:b], not_before: '2026-02-01T00:00:00Z', expires_at: '2026-01-01T00:00:00Z'}\n", "rules[0].expires_at", "after not_before"},
		{"limit on deny", "  - {id: r, effect: deny, actions: [a:b], limit: {count: 1, per: 1h}}\n", "rules[0].limit", "only to allow"},
		{"limit zero", "  - {id: r, effect: allow, actions: [a:b], limit: {count: 0, per: 1h}}\n", "rules[0].limit.count", "at least 1"},
		{"limit bad per", "  - {id: r, effect: allow, actions: [a:b], limit: {count: 1, per: soon}}\n", "rules[0].limit.per", "not a duration"},
		{"limit tiny per", "  - {id: r, effect: allow, actions: [a:b], limit: {count: 1, per: 1ms}}\n", "rules[0].limit.per", "between 1s"},
		{"cel syntax", "  - {id: r, effect: allow, actions: [a:b], when: 'params.x >'}\n", "rules[0].when", "does not compile: at 1:"},
		{"cel unknown variable", "  - {id: r, effect: allow, actions: [a:b], when: 'user.name == \"x\"'}\n", "rules[0].when", "undeclared reference to 'user'"},
		{"cel unknown identity field", "  - {id: r, effect: allow, actions: [a:b], when: 'identity.nmae == \"x\"'}\n", "rules[0].when", "undefined field 'nmae'"},
		{"cel unknown request field", "  - {id: r, effect: allow, actions: [a:b], when: 'request.tim.getHours() > 1'}\n", "rules[0].when", "undefined field 'tim'"},
		{"cel unknown action field", "  - {id: r, effect: allow, actions: [a:b], when: 'has(action.verb)'}\n", "rules[0].when", "undefined field 'verb'"},
		{"cel not bool", "  - {id: r, effect: allow, actions: [a:b], when: 'size(params)'}\n", "rules[0].when", "must return bool"},
		{"cel dyn not bool", "  - {id: r, effect: allow, actions: [a:b], when: 'params.flag'}\n", "rules[0].when", "must return bool"},
		{"invalid time zone", "  - {id: r, effect: allow, actions: [a:b], when: 'request.time.getHours(\"Europe/Berln\") > 8'}\n", "rules[0].when", `unknown time zone "Europe/Berln"`},
		{"invalid offset", "  - {id: r, effect: allow, actions: [a:b], when: 'request.time.getDayOfWeek(\"+25:00\") > 0'}\n", "rules[0].when", "offset"},
		{"Local zone", "  - {id: r, effect: allow, actions: [a:b], when: 'request.time.getHours(\"Local\") > 0'}\n", "rules[0].when", "not an IANA"},
		{"bad cidr", "  - {id: r, effect: allow, actions: [a:b], when: 'inCidr(request.ip, \"10.0.0.0/33\")'}\n", "rules[0].when", "not a CIDR"},
		{"cost bomb constant", "  - {id: r, effect: deny, actions: [a:b], when: '[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+e+f > 0))))))'}\n", "rules[0].when", "too expensive"},
		{"cost bomb input", "  - {id: r, effect: allow, actions: [a:b], when: 'params.l.all(a, params.l.all(b, params.l.all(c, true)))'}\n", "rules[0].when", "too expensive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			we := compileErr(t, ruleDoc(tc.rules), ContentTypeYAML)
			if we == nil {
				t.Fatal("accepted")
			}
			if we.Field != tc.field || !strings.Contains(we.Message, tc.msg) {
				t.Fatalf("got field=%q msg=%q; want field=%q msg containing %q", we.Field, we.Message, tc.field, tc.msg)
			}
			if tc.field != "rules[0].id" && strings.HasPrefix(tc.field, "rules[") && !strings.Contains(we.Message, `rule "r"`) {
				t.Fatalf("message does not name the rule: %q", we.Message)
			}
			if !strings.Contains(we.Message, "line 6") && !strings.Contains(we.Message, "line 7") {
				t.Fatalf("message does not name the line: %q", we.Message)
			}
		})
	}
}

func TestCompileRejectsSubjects(t *testing.T) {
	for name, src := range map[string]string{
		"no subjects":   "apiVersion: warden/v1\nkind: Policy\nname: p\nrules: [{id: r, effect: allow, actions: [a:b]}]\n",
		"both in entry": "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: a, selector: {type: x}}]\nrules: [{id: r, effect: allow, actions: [a:b]}]\n",
		"empty entry":   "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{}]\nrules: [{id: r, effect: allow, actions: [a:b]}]\n",
		"no rules":      "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: a}]\n",
		"no name":       "apiVersion: warden/v1\nkind: Policy\nsubjects: [{identity: a}]\nrules: [{id: r, effect: allow, actions: [a:b]}]\n",
	} {
		if we := compileErr(t, src, ""); we == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, when := range []string{
		`request.time.getHours("Europe/Berlin") >= 9 && request.time.getDayOfWeek("America/New_York") < 6`,
		`request.time.getHours("+05:30") == 1 || request.time.getHours() == 1`,
		`inCidr(request.ip, "10.0.0.0/8") || inCidr(request.ip, "2001:db8::/32")`,
		`globMatch(resource.repo, "acme/*") && emailDomain(identity.owner) == "acme.com"`,
		`has(params.amount) && params.amount > 1000.5 && params.amount < 5000`,
		`size(params.to) > 10 || params.to.exists(x, emailDomain(x) != "acme.com")`,
		`identity.labels.?team.orValue("") == "support" && action.class == "read"`,
		`identity.environment == "staging" && action.connector.startsWith("prod-")`,
		`context.ticket.matches("^[A-Z]+-[0-9]+$") && request.method == "POST" && request.path != ""`,
	} {
		src := ruleDoc("  - id: r\n    effect: deny\n    actions: ['*']\n    when: '" + strings.ReplaceAll(when, "'", "''") + "'\n")
		if we := compileErr(t, src, ""); we != nil {
			t.Errorf("%s: %v", when, we)
		}
	}
	if _, err := ParsePeriod("7d"); err != nil {
		t.Error(err)
	}
	if d, _ := ParsePeriod("90s"); d.Seconds() != 90 {
		t.Error("90s")
	}
}
