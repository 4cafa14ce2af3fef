package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// This file checks the indexed engine against a linear reference: for an
// identity and an action, the candidate rules are every rule (in policy-name,
// then rule order) of every policy in force with a subject naming the
// identity (by name or id) or a selector matching it, with a pattern that
// matches the action. The reference decision is the first deny, else the
// first require_approval, else the first allow (no conditions or limits here).

func refSubjectMatches(p *Policy, id *Identity) bool {
	for _, sub := range p.subjects {
		if sub.sel == nil {
			if (id.Name != "" && sub.identity == id.Name) || (id.ID != "" && sub.identity == id.ID) {
				return true
			}
			continue
		}
		s := sub.sel
		if (s.Type != "" && s.Type != id.Type) || (s.Environment != "" && s.Environment != id.Environment) || (s.Owner != "" && s.Owner != id.Owner) {
			continue
		}
		ok := true
		for k, v := range s.Labels {
			if got, in := id.Labels[k]; !in || got != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func refCandidates(state map[string]*Policy, id *Identity, conn, op string) []*rule {
	names := make([]string, 0, len(state))
	for n := range state {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*rule
	for _, n := range names {
		p := state[n]
		if !refSubjectMatches(p, id) {
			continue
		}
		for _, r := range p.rules {
			if r.matchesAction(conn, op) {
				out = append(out, r)
			}
		}
	}
	return out
}

func refDecide(cands []*rule) (Effect, string, string) {
	for _, eff := range []Effect{Deny, RequireApproval, Allow} {
		for _, r := range cands {
			if r.effect == eff {
				return eff, r.polName, r.id
			}
		}
	}
	return Deny, "", ""
}

// collidingKeys returns n keys whose hashes fall in the same one of the 256
// identity tables, with homes in the last few slots of a small table, so
// that probe chains collide and wrap around.
func collidingKeys(prefix string, n int) []string {
	var out []string
	shard := -1
	for i := 0; len(out) < n && i < 50_000_000; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		h := hashKey(k)
		if shard < 0 {
			shard = shardOf(h)
		}
		if shardOf(h) == shard && h&7 >= 6 {
			out = append(out, k)
		}
	}
	return out
}

type reviewModel struct {
	rng      *rand.Rand
	keys     []string // identity names and ids used by subjects
	idents   []Identity
	polNames []string
	pats     []string
	actions  []string
}

var reviewKeysOnce sync.Once
var reviewKeys []string

func newReviewModel(seed uint64) *reviewModel {
	reviewKeysOnce.Do(func() { reviewKeys = collidingKeys("agent-", 24) })
	m := &reviewModel{rng: rand.New(rand.NewPCG(seed, seed^0x9e37))}
	m.keys = append(m.keys, reviewKeys...)
	m.keys = append(m.keys, "bot", "nhi_1", "nhi_2", "x")
	// Identities: name and id from the key pool (an identity's id may be
	// another's name, as the engine does not tell them apart).
	for i := 0; i < 16; i++ {
		id := Identity{Type: []string{"ai_agent", "service", ""}[m.rng.IntN(3)], Environment: []string{"prod", "dev", ""}[m.rng.IntN(3)],
			Labels: map[string]string{"team": fmt.Sprintf("t%d", m.rng.IntN(3))}}
		switch m.rng.IntN(4) {
		case 0:
			id.Name = m.keys[m.rng.IntN(len(m.keys))]
		case 1:
			id.ID = m.keys[m.rng.IntN(len(m.keys))]
		case 2:
			id.Name = m.keys[m.rng.IntN(len(m.keys))]
			id.ID = id.Name
		default:
			id.Name = m.keys[m.rng.IntN(len(m.keys))]
			id.ID = m.keys[m.rng.IntN(len(m.keys))]
		}
		m.idents = append(m.idents, id)
	}
	// Policy names sharing 8-byte prefixes, prefixes of each other, etc.
	m.polNames = []string{"a", "ab", "abcdefgh", "abcdefgh-1", "abcdefgh-2", "abcdefgi", "b", "pol-00001", "pol-100000", "zz"}
	// Many distinct literal actions and connectors so that tables are
	// open-addressed and filter bits wrap (ids > 64).
	for c := 0; c < 12; c++ {
		for o := 0; o < 8; o++ {
			m.actions = append(m.actions, fmt.Sprintf("c%d:op%d", c, o))
		}
	}
	m.actions = append(m.actions, "gmail:send", "gmail-x:admin.users", "unknown:thing")
	m.pats = append(m.pats, "*", "*:*", "c1*:op*", "*:op3", "c2:*", "c3:op*", "c1:*", "gmail:*", "gmail*:send", "*:admin.*", "c10:*", "c11:op1*")
	m.pats = append(m.pats, m.actions...)
	return m
}

func (m *reviewModel) policy(t testing.TB, name string) *Policy {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: warden/v1\nkind: Policy\nname: %s\nsubjects:\n", name)
	ns := 1 + m.rng.IntN(3)
	for i := 0; i < ns; i++ {
		switch m.rng.IntN(6) {
		case 0:
			fmt.Fprintf(&b, "  - selector: {labels: {team: t%d}}\n", m.rng.IntN(3))
		case 1:
			fmt.Fprintf(&b, "  - selector: {type: ai_agent}\n")
		default:
			fmt.Fprintf(&b, "  - identity: %s\n", m.keys[m.rng.IntN(len(m.keys))])
		}
	}
	b.WriteString("rules:\n")
	effects := []string{"allow", "allow", "deny", "require_approval"}
	for r := 0; r < 1+m.rng.IntN(8); r++ {
		fmt.Fprintf(&b, "  - id: r%d\n    effect: %s\n    actions: [", r, effects[m.rng.IntN(len(effects))])
		for j := 0; j < 1+m.rng.IntN(4); j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", m.pats[m.rng.IntN(len(m.pats))])
		}
		b.WriteString("]\n")
	}
	return mustPolicy(t, b.String())
}

type heldSnap struct {
	s     *snapshot
	state map[string]*Policy
}

func checkSnapshot(t testing.TB, e *Engine, s *snapshot, state map[string]*Policy, m *reviewModel, where string) {
	t.Helper()
	for i := range m.idents {
		id := &m.idents[i]
		for _, action := range m.actions {
			conn, op, _ := ParseAction(action)
			want := refCandidates(state, id, conn, op)
			var got []*rule
			for _, ref := range s.candidates(nil, id, action, conn, op, false) {
				got = append(got, ref.r)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: identity %+v action %s: candidates %s, want %s", where, *id, action, ruleNames(got), ruleNames(want))
			}
			if e != nil {
				d := e.Decide(context.Background(), &Request{Identity: *id, Action: action, DryRun: true})
				eff, pol, rid := refDecide(want)
				if d.Effect != eff || d.Policy != pol || d.Rule != rid {
					t.Fatalf("%s: identity %+v action %s: decision %s %s/%s, want %s %s/%s", where, *id, action, d.Effect, d.Policy, d.Rule, eff, pol, rid)
				}
			}
		}
	}
}

func ruleNames(rs []*rule) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.pol.name+"/"+r.id+"("+string(r.effect)+")")
	}
	return "[" + strings.Join(s, " ") + "]"
}

func runReviewModel(t testing.TB, seed uint64, steps int) {
	m := newReviewModel(seed)
	e := NewEngine(Options{})
	state := map[string]*Policy{}
	var held []heldSnap
	for step := 0; step < steps; step++ {
		switch op := m.rng.IntN(10); {
		case op < 2 && len(state) > 0:
			names := make([]string, 0, len(state))
			for n := range state {
				names = append(names, n)
			}
			sort.Strings(names)
			n := names[m.rng.IntN(len(names))]
			delete(state, n)
			if !e.Delete(n) {
				t.Fatalf("step %d: Delete(%s) false", step, n)
			}
		case op == 2:
			// Replace with a fresh set, sometimes reusing current ones.
			next := map[string]*Policy{}
			for n, p := range state {
				if m.rng.IntN(2) == 0 {
					next[n] = p
				}
			}
			for i := 0; i < m.rng.IntN(4); i++ {
				n := m.polNames[m.rng.IntN(len(m.polNames))]
				next[n] = m.policy(t, n)
			}
			var ps []*Policy
			for _, p := range next {
				ps = append(ps, p)
			}
			state = next
			e.Replace(ps)
		default:
			n := m.polNames[m.rng.IntN(len(m.polNames))]
			p := m.policy(t, n)
			state[n] = p
			e.Put(p)
		}
		cur := e.snap.Load()
		checkSnapshot(t, e, cur, state, m, fmt.Sprintf("seed %d step %d", seed, step))
		if m.rng.IntN(5) == 0 {
			cp := make(map[string]*Policy, len(state))
			for k, v := range state {
				cp[k] = v
			}
			held = append(held, heldSnap{cur, cp})
		}
	}
	// Snapshots published earlier must still decide as they did.
	for i, h := range held {
		checkSnapshot(t, nil, h.s, h.state, m, fmt.Sprintf("seed %d held snapshot %d", seed, i))
	}
}

func TestReviewEngineMatchesLinearReference(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		runReviewModel(t, seed, 80)
	}
}

func FuzzReviewEngine(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(77))
	f.Fuzz(func(t *testing.T, seed uint64) {
		runReviewModel(t, seed, 40)
	})
}

// TestReviewIdentCollisions: many identity keys in one of the 256 tables,
// each with its own policy; renames (a policy moving from one identity to
// another), deletions and re-creations must never leave one identity seeing
// another's rules.
func TestReviewIdentCollisions(t *testing.T) {
	keys := collidingKeys("id-", 40)
	rng := rand.New(rand.NewPCG(3, 4))
	e := NewEngine(Options{})
	owner := map[string]string{} // policy name -> identity key it names
	for step := 0; step < 3000; step++ {
		pn := fmt.Sprintf("p%02d", rng.IntN(30))
		if rng.IntN(4) == 0 {
			e.Delete(pn)
			delete(owner, pn)
		} else {
			k := keys[rng.IntN(len(keys))]
			e.Put(mustPolicy(t, fmt.Sprintf("apiVersion: warden/v1\nkind: Policy\nname: %s\nsubjects: [{identity: %s}]\nrules:\n  - {id: r, effect: allow, actions: [\"svc:%s\"]}\n", pn, k, pn)))
			owner[pn] = k
		}
		if step%10 != 0 {
			continue
		}
		for _, k := range keys {
			for i := 0; i < 30; i++ {
				pn := fmt.Sprintf("p%02d", i)
				d := e.Decide(context.Background(), &Request{Identity: Identity{Name: k}, Action: "svc:" + pn})
				want := owner[pn] == k
				if (d.Effect == Allow) != want {
					t.Fatalf("step %d: %s svc:%s: %s (%s), want allowed=%v", step, k, pn, d.Effect, d.Policy, want)
				}
			}
		}
	}
}

// TestReviewConcurrentDenyStays: a deny in force for the whole test must win
// for every concurrent decision while other policies (with allows for the
// same identity and action) are put and deleted.
func TestReviewConcurrentDenyStays(t *testing.T) {
	e := NewEngine(Options{})
	e.Put(mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: zz-deny\nsubjects: [{identity: victim}]\nrules:\n  - {id: d, effect: deny, actions: [\"bank:transfer\"]}\n"))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d := e.Decide(context.Background(), &Request{Identity: Identity{Name: "victim", ID: "nhi_v"}, Action: "bank:transfer", DryRun: true})
				if d.Effect != Deny || d.Policy != "zz-deny" {
					bad.Store(fmt.Sprintf("%+v", d))
				}
				d = e.Decide(context.Background(), &Request{Identity: Identity{Name: "bystander"}, Action: "bank:transfer", DryRun: true})
				if d.Policy == "zz-deny" {
					bad.Store(fmt.Sprintf("bystander got the victim's deny: %+v", d))
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		name := fmt.Sprintf("a%03d", rng.IntN(50))
		if rng.IntN(3) == 0 {
			e.Delete(name)
			continue
		}
		e.Put(mustPolicy(t, fmt.Sprintf("apiVersion: warden/v1\nkind: Policy\nname: %s\nsubjects: [{identity: victim}, {identity: nhi_v}, {selector: {}}]\nrules:\n  - {id: a, effect: allow, actions: [\"bank:*\", \"bank:transfer\", \"*\", \"svc-%d:op\"]}\n", name, i)))
		if i%500 == 0 {
			e.Put(mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: a-bystander\nsubjects: [{identity: bystander}]\nrules:\n  - {id: a, effect: allow, actions: [\"bank:transfer\"]}\n"))
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

// TestReviewSelectorKeyCollision: selectorKey once joined label keys and
// values with '=', so {team: "x=y"} and {"team=x": "y"} got the same key and
// shared one selector entry (with one of the two selectors): a deny for one
// was skipped. Identity label values may contain '='. The key now
// length-prefixes every part.
func TestReviewSelectorKeyCollision(t *testing.T) {
	deny := mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: a-deny\nsubjects: [{selector: {labels: {team: \"x=y\"}}}]\nrules:\n  - {id: d, effect: deny, actions: [\"bank:transfer\"]}\n")
	// The parser refuses such a label key (it can never match an identity),
	// so the document is edited after parsing: the index must not depend on
	// that check.
	if _, err := Parse([]byte("apiVersion: warden/v1\nkind: Policy\nname: b-other\nsubjects: [{selector: {labels: {\"team=x\": \"y\"}}}]\nrules:\n  - {id: n, effect: allow, actions: [\"noop:x\"]}\n"), ContentTypeYAML); err == nil || !strings.Contains(err.Error(), "can never match") {
		t.Fatalf("a selector label key with '=' parsed: %v", err)
	}
	doc, err := Parse([]byte("apiVersion: warden/v1\nkind: Policy\nname: b-other\nsubjects: [{selector: {labels: {team: y}}}]\nrules:\n  - {id: n, effect: allow, actions: [\"noop:x\"]}\n"), ContentTypeYAML)
	if err != nil {
		t.Fatal(err)
	}
	doc.Subjects[0].Selector.Labels = map[string]string{"team=x": "y"}
	weird, err := Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]Selector{
		{{Labels: map[string]string{"team": "x=y"}}, {Labels: map[string]string{"team=x": "y"}}},
		{{Type: "a"}, {Environment: "a"}},
		{{Type: "a\x00"}, {Type: "a", Environment: ""}},
		{{Owner: "o", Labels: map[string]string{"k": "v"}}, {Owner: "o\x00k=v"}},
	} {
		if selectorKey(&pair[0]) == selectorKey(&pair[1]) {
			t.Errorf("selectors %+v and %+v share the key %q", pair[0], pair[1], selectorKey(&pair[0]))
		}
	}
	allow := mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: c-allow\nsubjects: [{selector: {}}]\nrules:\n  - {id: a, effect: allow, actions: [\"bank:transfer\", \"noop:x\"]}\n")
	id := Identity{Name: "bot", Labels: map[string]string{"team": "x=y"}}
	for _, mode := range []string{"replace", "put"} {
		e := NewEngine(Options{})
		if mode == "replace" {
			e.Replace([]*Policy{deny, weird, allow})
		} else {
			e.Put(deny)
			e.Put(allow)
			e.Put(weird)
		}
		d := e.Decide(context.Background(), &Request{Identity: id, Action: "bank:transfer"})
		if d.Effect != Deny {
			t.Errorf("%s: identity with team=x=y, bank:transfer: %s by %s/%s, want deny by a-deny/d", mode, d.Effect, d.Policy, d.Rule)
		}
	}
}

// TestReviewSymbolRebuildKeepsDeny: enough Puts with new actions to make the
// engine renumber its symbols from scratch several times; a deny of another
// policy (put once, never changed) and snapshots taken before each rebuild
// must keep deciding right.
func TestReviewSymbolRebuildKeepsDeny(t *testing.T) {
	e := NewEngine(Options{})
	e.Put(mustPolicy(t, "apiVersion: warden/v1\nkind: Policy\nname: z-deny\nsubjects: [{identity: bot}, {selector: {type: ai_agent}}]\nrules:\n  - {id: d, effect: deny, actions: [\"bank:*\", \"svc:op-7\", \"*:admin.*\"]}\n"))
	bot := Identity{Name: "bot", ID: "nhi_1", Type: "ai_agent"}
	var old []*snapshot
	rebuilds := 0
	for i := 0; i < 4000; i++ {
		before := e.snap.Load()
		e.Put(mustPolicy(t, fmt.Sprintf("apiVersion: warden/v1\nkind: Policy\nname: a\nsubjects: [{identity: bot}, {identity: nhi_1}]\nrules:\n  - {id: r, effect: allow, actions: [\"svc:op-%d\", \"bank:x%d\", \"*\", \"c%d:admin.*\"]}\n", i, i, i)))
		if e.snap.Load().syms.built != before.syms.built {
			rebuilds++
			old = append(old, before)
		}
		for _, a := range []string{"bank:transfer", fmt.Sprintf("bank:x%d", i), "svc:op-7", fmt.Sprintf("c%d:admin.x", i)} {
			for _, s := range []*snapshot{e.snap.Load(), before} {
				cs := s.candidates(nil, &bot, a, strings.SplitN(a, ":", 2)[0], strings.SplitN(a, ":", 2)[1], false)
				hasDeny := false
				for _, c := range cs {
					hasDeny = hasDeny || c.r.effect == Deny
				}
				if !hasDeny {
					t.Fatalf("put %d: %s: the deny is not a candidate", i, a)
				}
			}
			if d := e.Decide(context.Background(), &Request{Identity: bot, Action: a}); d.Effect != Deny {
				t.Fatalf("put %d: %s: %s by %s", i, a, d.Effect, d.Policy)
			}
		}
	}
	if rebuilds == 0 {
		t.Fatal("no rebuild happened")
	}
	for _, s := range old {
		if cs := s.candidates(nil, &bot, "bank:y", "bank", "y", false); len(cs) == 0 {
			t.Fatal("old snapshot lost its candidates")
		}
	}
}
