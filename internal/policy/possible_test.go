package policy

import (
	"context"
	"testing"
	"time"
)

const possiblePolicy = `apiVersion: warden/v1
kind: Policy
name: p-possible
subjects: [{identity: agent}, {selector: {labels: {team: ops}}}]
rules:
  - {id: read, effect: allow, actions: ["crm:contacts.get"]}
  - {id: wild, effect: allow, actions: ["gmail:*"]}
  - {id: no-admin, effect: deny, actions: ["gmail:admin.*"]}
  - {id: sometimes, effect: allow, actions: ["files:read"], when: 'params.path.startsWith("/public/")'}
  - {id: etc, effect: deny, actions: ["files:write"], when: 'params.path.startsWith("/etc/")'}
  - {id: write, effect: allow, actions: ["files:write"]}
  - {id: big, effect: require_approval, actions: ["pay:charge"], when: 'params.amount > 1000'}
  - {id: windowed-deny, effect: deny, actions: ["db:select"], not_before: "2026-01-01T00:00:00Z"}
  - {id: db, effect: allow, actions: ["db:select"]}
  - {id: limited, effect: allow, actions: ["sms:send"], limit: {count: 1, per: 1h}}
  - {id: later, effect: allow, actions: ["cal:create"], not_before: "2030-01-01T00:00:00Z"}
  - {id: nuke, effect: deny, actions: ["*:delete"]}
  - {id: any-delete, effect: allow, actions: ["crm:*"]}
`

const otherSubjectPolicy = `apiVersion: warden/v1
kind: Policy
name: q-other
subjects: [{identity: someone-else}]
rules:
  - {id: all, effect: allow, actions: ["*"]}
`

func TestPossible(t *testing.T) {
	e := NewEngine(Options{})
	e.Put(mustPolicy(t, possiblePolicy))
	e.Put(mustPolicy(t, otherSubjectPolicy))
	agent := Identity{ID: "nhi_a", Name: "agent"}
	ops := Identity{ID: "nhi_o", Name: "ops-bot", Labels: map[string]string{"team": "ops"}}
	stranger := Identity{ID: "nhi_s", Name: "stranger"}
	cases := []struct {
		id     Identity
		action string
		want   bool
		why    string
	}{
		{agent, "crm:contacts.get", true, "plain allow"},
		{ops, "crm:contacts.get", true, "allow via selector"},
		{stranger, "crm:contacts.get", false, "no policy for this identity"},
		{agent, "gmail:messages.send", true, "wildcard allow"},
		{agent, "gmail:admin.users", false, "unconditional deny wins over the wildcard allow"},
		{agent, "files:read", true, "conditional allow: some call may pass"},
		{agent, "files:write", true, "conditional deny does not hide the action"},
		{agent, "pay:charge", true, "conditional require_approval"},
		{agent, "db:select", true, "time-bounded deny does not hide the action"},
		{agent, "sms:send", true, "limits are ignored"},
		{agent, "cal:create", true, "time bounds of allows are ignored"},
		{agent, "crm:delete", false, "unconditional deny pattern *:delete"},
		{agent, "crm:contacts.delete", true, "*:delete matches only the operation 'delete'"},
		{agent, "nothing:here", false, "no rule names it"},
		{agent, "Bad:Action", false, "malformed action"},
		{agent, "", false, "empty action"},
	}
	for _, c := range cases {
		if got := e.Possible(c.id, c.action); got != c.want {
			t.Errorf("Possible(%s, %q) = %v, want %v (%s)", c.id.Name, c.action, got, c.want, c.why)
		}
	}
}

// TestPossibleIsSound checks the property tools/list relies on: whenever
// Decide allows a call or sends it for approval, Possible is true for its
// action. (The converse need not hold.)
func TestPossibleIsSound(t *testing.T) {
	e := NewEngine(Options{Now: func() time.Time { return time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC) }})
	e.Put(mustPolicy(t, possiblePolicy))
	e.Put(mustPolicy(t, basePolicy))
	e.Put(mustPolicy(t, otherPolicy))
	e.Put(mustPolicy(t, globalPolicy))
	ids := []Identity{bot, staging, byID, {ID: "nhi_a", Name: "agent"}, {ID: "nhi_o", Name: "ops", Labels: map[string]string{"team": "ops"}}}
	actions := []string{"crm:contacts.get", "crm:contacts.list", "crm:x.delete", "crm:delete", "gmail:messages.send", "gmail:admin.x",
		"pay:charge", "files:read", "files:write", "db:select", "sms:send", "cal:create", "misc:anything", "xy:zy", "github:issues.create",
		"staging-db:select", "prod-db:select", "nothing:here"}
	paramSets := []map[string]any{
		nil,
		{"path": "/public/a", "amount": 5000, "to": []any{"a"}},
		{"path": "/etc/passwd", "amount": 1},
	}
	resources := []map[string]any{nil, {"repo": "acme/x"}, {"repo": "evil/x"}}
	for _, id := range ids {
		for _, a := range actions {
			for _, p := range paramSets {
				for _, res := range resources {
					d := e.Decide(context.Background(), &Request{Identity: id, Action: a, Params: p, Resource: res, DryRun: true})
					if (d.Effect == Allow || d.Effect == RequireApproval) && !e.Possible(id, a) {
						t.Errorf("Decide(%s, %s, %v, %v) = %s but Possible is false", id.Name, a, p, res, d.Effect)
					}
				}
			}
		}
	}
}
