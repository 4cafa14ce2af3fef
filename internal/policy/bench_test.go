package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// The benchmark corpus: identities agent-NNNN (type ai_agent, team tNN,
// environment prod or staging), connectors svc-NN with operations
// items.get/list/create/delete and admin.users, and policies of ten rules each
// that mix exact actions, operation patterns, connector wildcards and "*";
// every third rule has a CEL condition (amount thresholds, recipient counts,
// business hours in Europe/Berlin, labels, CIDR).

const benchConnectors = 50

var benchOps = []string{"items.get", "items.list", "items.create", "items.delete", "admin.users"}

var benchConds = []string{
	`params.amount < 1000`,
	`size(params.to) <= 5`,
	`request.time.getHours("Europe/Berlin") >= 8 && request.time.getHours("Europe/Berlin") < 18`,
	`identity.labels.team == "t03"`,
	`inCidr(request.ip, "10.0.0.0/8")`,
	`has(params.draft) && params.draft == true`,
}

// benchPolicy writes policy k applying to the given identity names (and, if
// team is set, to a team selector).
func benchPolicy(k int, idents []string, team string, rng *rand.Rand) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: warden/v1\nkind: Policy\nname: pol-%05d\nsubjects:\n", k)
	for _, id := range idents {
		fmt.Fprintf(&b, "  - identity: %s\n", id)
	}
	if team != "" {
		fmt.Fprintf(&b, "  - selector: {type: ai_agent, labels: {team: %s}}\n", team)
	}
	b.WriteString("rules:\n")
	for r := 0; r < 10; r++ {
		conn := fmt.Sprintf("svc-%02d", rng.IntN(benchConnectors))
		var effect, action string
		switch r % 5 {
		case 0:
			effect, action = "allow", conn+":items.get"
		case 1:
			effect, action = "allow", conn+":items.*"
		case 2:
			effect, action = "require_approval", conn+":items.create"
		case 3:
			effect, action = "deny", conn+":*.delete"
		case 4:
			effect, action = "deny", "*:admin.*"
		}
		fmt.Fprintf(&b, "  - id: r%d\n    effect: %s\n    actions: [%q]\n", r, effect, action)
		if r%3 == 0 {
			fmt.Fprintf(&b, "    when: '%s'\n", benchConds[rng.IntN(len(benchConds))])
		}
		if effect == "allow" && r == 5 {
			b.WriteString("    limit: {count: 1000000000, per: 1h}\n")
		}
	}
	return b.String()
}

type benchSet struct {
	engine *Engine
	idents []Identity // in the order their policies were made
	reqs   []Request
	warm   []Request // other requests of the same mix, never timed
}

// newBenchSet builds nPolicies policies; each applies to identsPer identities
// of its own (by name) and, when teams > 0, policy k also applies to team
// t(k mod teams) by selector.
func newBenchSet(b testing.TB, nPolicies, identsPer, teams int) *benchSet {
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []*Policy
	var idents []Identity
	for k := 0; k < nPolicies; k++ {
		var names []string
		for j := 0; j < identsPer; j++ {
			n := len(idents)
			env := "prod"
			if n%4 == 0 {
				env = "staging"
			}
			id := Identity{
				ID: fmt.Sprintf("nhi_%06d", n), Name: fmt.Sprintf("agent-%05d", n), Type: "ai_agent",
				Owner: "owner@acme.com", Environment: env,
				Labels: map[string]string{"team": fmt.Sprintf("t%02d", n%max(teams, 1))},
			}
			idents = append(idents, id)
			names = append(names, id.Name)
		}
		team := ""
		if teams > 0 {
			team = fmt.Sprintf("t%02d", k%teams)
		}
		ps = append(ps, mustPolicy(b, benchPolicy(k, names, team, rng)))
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	e := NewEngine(Options{Now: func() time.Time { return now }})
	e.Replace(ps)
	set := &benchSet{engine: e, idents: idents}
	set.ask(idents)
	return set
}

// ask makes the set's requests: 4,096 timed and 256 for warming up, each
// from one of the given identities, for a random action of the benchmark's
// connectors. The requests draw from their own generator, so sets asked by
// the same identities ask exactly the same questions.
func (set *benchSet) ask(idents []Identity) {
	rng := rand.New(rand.NewPCG(5, 6))
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	set.reqs = nil
	for i := 0; i < 4096+256; i++ {
		id := idents[rng.IntN(len(idents))]
		set.reqs = append(set.reqs, Request{
			Identity: id,
			Action:   fmt.Sprintf("svc-%02d:%s", rng.IntN(benchConnectors), benchOps[rng.IntN(len(benchOps))]),
			Params:   map[string]any{"amount": float64(rng.IntN(2000)), "to": []any{"a@x.com", "b@y.com"}},
			Time:     now.Add(time.Duration(rng.IntN(12)) * time.Hour),
			IP:       "10.1.2.3",
		})
	}
	set.reqs, set.warm = set.reqs[:4096], set.reqs[4096:]
}

// runDecide times every Decide and reports p50/p99 (ns) and decisions/s.
// Each latency includes one time.Now/time.Since pair (about 20-30 ns).
func runDecide(b *testing.B, set *benchSet) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	// Building a large set leaves a large heap and garbage behind (and the
	// testing package builds it twice, for b.N=1 and then b.N). Collect it
	// now: otherwise a mark phase sized by the setup runs during the timed
	// loop, and only the large sizes pay for it.
	runtime.GC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &set.reqs[i%len(set.reqs)]
		t0 := time.Now()
		d := set.engine.Decide(ctx, req)
		lat = append(lat, time.Since(t0))
		if d.Code == "" {
			b.Fatal("no decision")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	}
}

// BenchmarkDecideRealistic: 1,000 identities, 100 policies, 1,000 rules, CEL
// on a third. Each identity is named by one policy and reaches five more
// through its team's selector.
func BenchmarkDecideRealistic(b *testing.B) {
	set := newBenchSet(b, 100, 10, 20)
	runDecide(b, set)
}

// BenchmarkDecideRealisticHotPath is the same set as the gateway asks it:
// the deciding rule only (SkipMatched), no allocation per decision.
func BenchmarkDecideRealisticHotPath(b *testing.B) {
	set := newBenchSet(b, 100, 10, 20)
	for i := range set.reqs {
		set.reqs[i].SkipMatched = true
	}
	runDecide(b, set)
}

// newScalingSet is n policies of two identities each, plus five
// organisation-wide policies that apply to everyone by selector, asked as the
// gateway asks (SkipMatched). With spread the requests come from all 2n
// identities; without, from the 20 identities of the first ten policies,
// which are the same at every n (policies are generated in order from one
// seed): then every size answers exactly the same questions with exactly the
// same matching rules, and only the number of other policies grows.
func newScalingSet(b *testing.B, n int, spread bool) *benchSet {
	set := newBenchSet(b, n, 2, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	extra := set.engine.Policies()
	for k := 0; k < 5; k++ {
		src := strings.Replace(benchPolicy(100000+k, nil, "", rng), "subjects:\n", "subjects:\n  - selector: {type: ai_agent}\n", 1)
		extra = append(extra, mustPolicy(b, src))
	}
	set.engine.Replace(extra)
	if !spread {
		set.ask(set.idents[:20])
	}
	set.skipMatched()
	return set
}

func (set *benchSet) skipMatched() {
	for _, reqs := range [][]Request{set.reqs, set.warm} {
		for i := range reqs {
			reqs[i].SkipMatched = true // as the gateway asks
		}
	}
}

// BenchmarkDecideScaling grows the policy count from 10 to 10,000 (two
// identities per policy, plus five organisation-wide policies) and asks the
// same questions at every size: the rules that could match a request are the
// same, the total grows 1000x. Any growth is the index's.
func BenchmarkDecideScaling(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			runDecide(b, newScalingSet(b, n, false))
		})
	}
}

// BenchmarkDecideScalingSpread is the same sets asked by every identity
// alike: at 10,000 policies almost every request is the first in a long
// while for its identity, so the index entries and rules it reads are
// rarely in the CPU cache. This measures the memory hierarchy as much as the
// engine (a workload concentrated on fewer active identities sits between
// the two benchmarks).
func BenchmarkDecideScalingSpread(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			runDecide(b, newScalingSet(b, n, true))
		})
	}
}

// BenchmarkDecideScalingRatio measures the scaling target where a shared
// machine's load would otherwise decide it. It builds the 10- and
// 10,000-policy sets once and alternates between them, one timed pass over
// the request mix at a time (each after an untimed warm-up on other requests
// of the same mix), so other processes slow both sizes alike: 10,000 asked
// like 10 (same identities, same questions) and 10,000 spread over all its
// identities. b.N decisions per set; it reports each set's p50 and p99 and
// the ratios of the p99s to that of 10 policies.
func BenchmarkDecideScalingRatio(b *testing.B) {
	names := []string{"10", "10000", "10000spread"}
	sets := []*benchSet{newScalingSet(b, 10, false), newScalingSet(b, 10000, false), nil}
	spread := *sets[1]
	spread.ask(spread.idents)
	spread.skipMatched()
	sets[2] = &spread
	lats := make([][]time.Duration, len(sets))
	for k := range sets {
		lats[k] = make([]time.Duration, 0, b.N)
	}
	ctx := context.Background()
	b.ReportAllocs()
	runtime.GC()
	b.ResetTimer()
	for done := 0; done < b.N; {
		chunk := min(len(sets[0].reqs), b.N-done)
		for k, set := range sets {
			for i := range set.warm {
				set.engine.Decide(ctx, &set.warm[i])
			}
			for i := 0; i < chunk; i++ {
				t0 := time.Now()
				d := set.engine.Decide(ctx, &set.reqs[i])
				lats[k] = append(lats[k], time.Since(t0))
				if d.Code == "" {
					b.Fatal("no decision")
				}
			}
		}
		done += chunk
	}
	b.StopTimer()
	var p99 []float64
	for k, name := range names {
		lat := lats[k]
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns/"+name)
		p99 = append(p99, float64(lat[len(lat)*99/100].Nanoseconds()))
		b.ReportMetric(p99[k], "p99-ns/"+name)
		if k > 0 {
			b.ReportMetric(p99[k]/p99[0], "p99-ratio/"+name)
		}
	}
}

// BenchmarkBusinessHours is one business-hours rule (getHours in
// Europe/Berlin twice): with the cached zone it costs what any other
// condition costs.
func BenchmarkBusinessHours(b *testing.B) {
	src := `apiVersion: warden/v1
kind: Policy
name: hours
subjects: [{identity: bot}]
rules:
  - id: business-hours
    effect: allow
    actions: ["gmail:messages.send"]
    when: 'request.time.getHours("Europe/Berlin") >= 9 && request.time.getHours("Europe/Berlin") < 17'
`
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	e := NewEngine(Options{Now: func() time.Time { return now }})
	e.Put(mustPolicy(b, src))
	set := &benchSet{engine: e, reqs: []Request{{Identity: bot, Action: "gmail:messages.send", Time: now}}}
	runDecide(b, set)
}

// BenchmarkCompile measures saving a ten-rule policy (parse, check, plan).
func BenchmarkCompile(b *testing.B) {
	src := []byte(benchPolicy(1, []string{"a", "b"}, "t01", rand.New(rand.NewPCG(1, 1))))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		doc, err := Parse(src, ContentTypeYAML)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutInto10000 measures replacing one policy while 10,000 are in
// force: the whole index is rebuilt into a new snapshot.
func BenchmarkPutInto10000(b *testing.B) {
	set := newBenchSet(b, 10000, 2, 0)
	p := set.engine.Policies()[42]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		set.engine.Put(p)
	}
}
