package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestIncrementalPutMatchesFullBuild applies a random sequence of Put and
// Delete and checks after each step that the incrementally updated engine
// decides exactly like one built from scratch with the same policies.
func TestIncrementalPutMatchesFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"agent-00000", "agent-00001", "agent-00002", "agent-00003", "nhi_000004"}
	var versions []*Policy
	for k := 0; k < 40; k++ {
		var idents []string
		for j := 0; j < rng.IntN(3); j++ {
			idents = append(idents, names[rng.IntN(len(names))])
		}
		team := ""
		if rng.IntN(2) == 0 || len(idents) == 0 {
			team = fmt.Sprintf("t%02d", rng.IntN(3))
		}
		src := benchPolicy(k%8, idents, team, rng) // 8 names, several versions each
		if rng.IntN(4) == 0 {
			src = strings.Replace(src, "subjects:\n", "subjects:\n  - selector: {}\n", 1)
		}
		versions = append(versions, mustPolicy(t, src))
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	inc := NewEngine(Options{Now: func() time.Time { return now }})
	state := map[string]*Policy{}
	var reqs []Request
	for i := 0; i < 300; i++ {
		n := rng.IntN(len(names))
		reqs = append(reqs, Request{
			Identity: Identity{ID: fmt.Sprintf("nhi_%06d", n), Name: names[n], Type: "ai_agent", Labels: map[string]string{"team": fmt.Sprintf("t%02d", rng.IntN(3))}},
			Action:   fmt.Sprintf("svc-%02d:%s", rng.IntN(benchConnectors), benchOps[rng.IntN(len(benchOps))]),
			Params:   map[string]any{"amount": float64(rng.IntN(2000)), "to": []any{"a"}},
			IP:       "10.0.0.1", DryRun: true,
		})
	}
	for step := 0; step < 120; step++ {
		if rng.IntN(4) == 0 && len(state) > 0 {
			for name := range state {
				delete(state, name)
				inc.Delete(name)
				break
			}
		} else {
			p := versions[rng.IntN(len(versions))]
			state[p.name] = p
			inc.Put(p)
		}
		full := NewEngine(Options{Now: func() time.Time { return now }})
		var ps []*Policy
		for _, p := range state {
			ps = append(ps, p)
		}
		full.Replace(ps)
		for i := range reqs {
			a := inc.Decide(context.Background(), &reqs[i])
			b := full.Decide(context.Background(), &reqs[i])
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("step %d request %d: incremental %+v, full %+v", step, i, a, b)
			}
		}
	}
}

// TestPutKeepsSymbolsBounded re-puts one policy with a new action each time:
// Put numbers the new action and never forgets one, so the engine must
// rebuild its index once forgotten actions dominate, and still decide right
// (the current action allowed, the previous one not).
func TestPutKeepsSymbolsBounded(t *testing.T) {
	e := NewEngine(Options{})
	bot := Identity{ID: "nhi_1", Name: "bot"}
	for i := 0; i < 3000; i++ {
		e.Put(mustPolicy(t, fmt.Sprintf("apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: bot}]\nrules:\n  - {id: r, effect: allow, actions: [\"svc:op-%d\", \"svc-%d:*\"]}\n", i, i)))
		if n := len(e.snap.Load().syms.pats); n > 2048+16 {
			t.Fatalf("after %d puts the index numbers %d symbols", i+1, n)
		}
		if i%97 != 0 {
			continue
		}
		for _, c := range []struct {
			action string
			want   Effect
		}{
			{fmt.Sprintf("svc:op-%d", i), Allow},
			{fmt.Sprintf("svc-%d:x", i), Allow},
			{fmt.Sprintf("svc:op-%d", i-1), Deny},
			{fmt.Sprintf("svc-%d:x", i-1), Deny},
		} {
			if d := e.Decide(context.Background(), &Request{Identity: bot, Action: c.action}); d.Effect != c.want {
				t.Fatalf("after %d puts, %s: %s (%s), want %s", i+1, c.action, d.Effect, d.Code, c.want)
			}
		}
	}
}
