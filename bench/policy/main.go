// Command policy-bench runs the same authorization decisions through Warden's
// policy engine, OPA (embedded, prepared query) and cedar-go, with equivalent
// policies generated for each, checks that all three decide every request the
// same way, and prints a latency table.
//
//	cd bench/policy && go run . [-policies 10,100] [-n 20000]
//
// It is a separate module so that the main module never depends on OPA or
// cedar-go.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"warden/internal/policy"
)

// The corpus, shared by all engines: identities agent-NNNNN (type ai_agent,
// team tNN); connectors svc-NN with five operations; policies with ten rules
// each that mix exact actions, operation patterns, "*:admin.*" and
// "svc:*.delete" denies; every third rule has a condition.
const (
	connectors = 50
	identsPer  = 10
	teams      = 20
)

var ops = []string{"items.get", "items.list", "items.create", "items.delete", "admin.users"}

type cond struct{ warden, rego, cedar string }

var conds = []cond{
	{`params.amount < 1000`, `input.params.amount < 1000`, `context.amount < 1000`},
	{`identity.labels.team == "t03"`, `input.principal.team == "t03"`, `principal.team == "t03"`},
	{`inCidr(request.ip, "10.0.0.0/8")`, `net.cidr_contains("10.0.0.0/8", input.ip)`, `context.ip.isInRange(ip("10.0.0.0/8"))`},
	{`has(params.draft) && params.draft == true`, `input.params.draft == true`, `context has draft && context.draft == true`},
}

type rule struct {
	id      string
	effect  string // allow | deny
	pattern string
	cond    int // index into conds, -1 for none
}

type pol struct {
	name   string
	idents []string
	team   string
	rules  []rule
}

type ident struct {
	name, team string
}

type req struct {
	id     ident
	action string
	amount int
	ip     string
	draft  int // 0 absent, 1 true, 2 false
}

func generate(nPolicies int, rng *rand.Rand) ([]pol, []ident) {
	var pols []pol
	var ids []ident
	for k := 0; k < nPolicies; k++ {
		p := pol{name: fmt.Sprintf("pol-%05d", k), team: fmt.Sprintf("t%02d", k%teams)}
		for j := 0; j < identsPer; j++ {
			n := len(ids)
			id := ident{name: fmt.Sprintf("agent-%05d", n), team: fmt.Sprintf("t%02d", n%teams)}
			ids = append(ids, id)
			p.idents = append(p.idents, id.name)
		}
		for r := 0; r < 10; r++ {
			conn := fmt.Sprintf("svc-%02d", rng.IntN(connectors))
			ru := rule{id: fmt.Sprintf("r%d", r), cond: -1}
			switch r % 5 {
			case 0:
				ru.effect, ru.pattern = "allow", conn+":items.get"
			case 1:
				ru.effect, ru.pattern = "allow", conn+":items.*"
			case 2:
				ru.effect, ru.pattern = "allow", conn+":items.create"
			case 3:
				ru.effect, ru.pattern = "deny", conn+":*.delete"
			case 4:
				ru.effect, ru.pattern = "deny", "*:admin.*"
			}
			if r%3 == 0 {
				ru.cond = rng.IntN(len(conds))
			}
			p.rules = append(p.rules, ru)
		}
		pols = append(pols, p)
	}
	return pols, ids
}

func requests(ids []ident, rng *rand.Rand, n int) []req {
	var out []req
	for i := 0; i < n; i++ {
		ip := "10.1.2.3"
		if rng.IntN(2) == 0 {
			ip = "192.168.1.1"
		}
		out = append(out, req{
			id:     ids[rng.IntN(len(ids))],
			action: fmt.Sprintf("svc-%02d:%s", rng.IntN(connectors), ops[rng.IntN(len(ops))]),
			amount: rng.IntN(2000),
			ip:     ip,
			draft:  rng.IntN(3),
		})
	}
	return out
}

// ---- Warden ----

func wardenEngine(pols []pol) (*policy.Engine, error) {
	var ps []*policy.Policy
	for _, p := range pols {
		var b strings.Builder
		fmt.Fprintf(&b, "apiVersion: warden/v1\nkind: Policy\nname: %s\nsubjects:\n", p.name)
		for _, id := range p.idents {
			fmt.Fprintf(&b, "  - identity: %s\n", id)
		}
		fmt.Fprintf(&b, "  - selector: {type: ai_agent, labels: {team: %s}}\nrules:\n", p.team)
		for _, r := range p.rules {
			fmt.Fprintf(&b, "  - id: %s\n    effect: %s\n    actions: [%q]\n", r.id, r.effect, r.pattern)
			if r.cond >= 0 {
				fmt.Fprintf(&b, "    when: '%s'\n", conds[r.cond].warden)
			}
		}
		doc, err := policy.Parse([]byte(b.String()), policy.ContentTypeYAML)
		if err != nil {
			return nil, err
		}
		cp, err := policy.Compile(doc)
		if err != nil {
			return nil, err
		}
		ps = append(ps, cp)
	}
	e := policy.NewEngine(policy.Options{})
	e.Replace(ps)
	return e, nil
}

func wardenRequest(r req) *policy.Request {
	params := map[string]any{"amount": r.amount}
	if r.draft > 0 {
		params["draft"] = r.draft == 1
	}
	return &policy.Request{
		Identity: policy.Identity{ID: "nhi_" + r.id.name, Name: r.id.name, Type: "ai_agent", Labels: map[string]string{"team": r.id.team}},
		Action:   r.action,
		Params:   params,
		IP:       r.ip,
		Time:     time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),
	}
}

// ---- OPA ----

func regoModule(pols []pol) string {
	var b strings.Builder
	b.WriteString("package warden\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\tcount(denies) == 0\n\tcount(allows) > 0\n}\n\n")
	for _, p := range pols {
		subj := "subj_" + strings.ReplaceAll(p.name, "-", "_")
		fmt.Fprintf(&b, "%s if data.subjects[%q][input.principal.name]\n\n", subj, p.name)
		fmt.Fprintf(&b, "%s if {\n\tinput.principal.type == \"ai_agent\"\n\tinput.principal.team == %q\n}\n\n", subj, p.team)
		for _, r := range p.rules {
			set := "allows"
			if r.effect == "deny" {
				set = "denies"
			}
			fmt.Fprintf(&b, "%s contains %q if {\n", set, p.name+"/"+r.id)
			if strings.Contains(r.pattern, "*") {
				fmt.Fprintf(&b, "\tglob.match(%q, [\":\"], input.action)\n", r.pattern)
			} else {
				fmt.Fprintf(&b, "\tinput.action == %q\n", r.pattern)
			}
			fmt.Fprintf(&b, "\t%s\n", subj)
			if r.cond >= 0 {
				fmt.Fprintf(&b, "\t%s\n", conds[r.cond].rego)
			}
			b.WriteString("}\n\n")
		}
	}
	return b.String()
}

// regoData holds each policy's named identities as a set (a JSON object
// name -> true), looked up in O(1) by the subject rules.
func regoData(pols []pol) map[string]any {
	subjects := map[string]any{}
	for _, p := range pols {
		set := map[string]any{}
		for _, id := range p.idents {
			set[id] = true
		}
		subjects[p.name] = set
	}
	return map[string]any{"subjects": subjects}
}

func regoInput(r req) map[string]any {
	params := map[string]any{"amount": r.amount}
	if r.draft > 0 {
		params["draft"] = r.draft == 1
	}
	return map[string]any{
		"principal": map[string]any{"name": r.id.name, "type": "ai_agent", "team": r.id.team},
		"action":    r.action,
		"params":    params,
		"ip":        r.ip,
	}
}

// ---- Cedar ----

type cedarSetup struct {
	all      *cedar.PolicySet
	sliced   map[string]*cedar.PolicySet // by identity name
	entities cedar.EntityMap
}

func cedarBuild(pols []pol, ids []ident) (*cedarSetup, error) {
	s := &cedarSetup{all: cedar.NewPolicySet(), sliced: map[string]*cedar.PolicySet{}, entities: cedar.EntityMap{}}
	groupsOf := map[string][]cedar.EntityUID{} // identity -> named policy groups
	teamGroups := map[string][]cedar.EntityUID{}
	patterns := map[string]bool{}
	byIdent := map[string][]string{} // identity -> policy names that apply
	for _, p := range pols {
		g := cedar.NewEntityUID("Group", cedar.String(p.name))
		s.entities[g] = cedar.Entity{UID: g}
		for _, id := range p.idents {
			groupsOf[id] = append(groupsOf[id], g)
		}
		teamGroups[p.team] = append(teamGroups[p.team], g)
		for _, r := range p.rules {
			patterns[r.pattern] = true
		}
	}
	for t, gs := range teamGroups {
		uid := cedar.NewEntityUID("Team", cedar.String(t))
		s.entities[uid] = cedar.Entity{UID: uid, Parents: cedar.NewEntityUIDSet(gs...)}
	}
	for _, id := range ids {
		uid := cedar.NewEntityUID("User", cedar.String(id.name))
		parents := append(slices.Clone(groupsOf[id.name]), cedar.NewEntityUID("Team", cedar.String(id.team)))
		s.entities[uid] = cedar.Entity{UID: uid, Parents: cedar.NewEntityUIDSet(parents...),
			Attributes: cedar.NewRecord(cedar.RecordMap{"team": cedar.String(id.team), "type": cedar.String("ai_agent")})}
	}
	// Every concrete action is a member of every pattern that matches it:
	// Cedar has no wildcards in scopes, so patterns become action groups.
	for c := 0; c < connectors; c++ {
		for _, op := range ops {
			a := fmt.Sprintf("svc-%02d:%s", c, op)
			var parents []cedar.EntityUID
			for pat := range patterns {
				if pat != a && policy.MatchAction(pat, a) {
					parents = append(parents, cedar.NewEntityUID("Action", cedar.String(pat)))
				}
			}
			uid := cedar.NewEntityUID("Action", cedar.String(a))
			s.entities[uid] = cedar.Entity{UID: uid, Parents: cedar.NewEntityUIDSet(parents...)}
		}
	}
	for pat := range patterns {
		uid := cedar.NewEntityUID("Action", cedar.String(pat))
		if _, ok := s.entities[uid]; !ok {
			s.entities[uid] = cedar.Entity{UID: uid}
		}
	}
	compiled := map[string][]*cedar.Policy{}
	for _, p := range pols {
		for _, r := range p.rules {
			eff := "permit"
			if r.effect == "deny" {
				eff = "forbid"
			}
			scope := fmt.Sprintf("action in Action::%q", r.pattern)
			if !strings.Contains(r.pattern, "*") {
				scope = fmt.Sprintf("action == Action::%q", r.pattern)
			}
			src := fmt.Sprintf("%s (principal in Group::%q, %s, resource)", eff, p.name, scope)
			if r.cond >= 0 {
				src += " when { " + conds[r.cond].cedar + " }"
			}
			src += ";"
			var cp cedar.Policy
			if err := cp.UnmarshalCedar([]byte(src)); err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			id := cedar.PolicyID(p.name + "/" + r.id)
			s.all.Add(id, &cp)
			compiled[p.name] = append(compiled[p.name], &cp)
		}
	}
	// Slicing: each identity gets the policies whose group it belongs to,
	// by name or through its team (what Warden's subject index does).
	for _, p := range pols {
		for _, id := range ids {
			named := slices.Contains(p.idents, id.name)
			if named || id.team == p.team {
				byIdent[id.name] = append(byIdent[id.name], p.name)
			}
		}
	}
	for _, id := range ids {
		ps := cedar.NewPolicySet()
		for _, pn := range byIdent[id.name] {
			for i, cp := range compiled[pn] {
				ps.Add(cedar.PolicyID(fmt.Sprintf("%s/r%d", pn, i)), cp)
			}
		}
		s.sliced[id.name] = ps
	}
	return s, nil
}

func cedarRequest(r req) cedar.Request {
	ip, _ := types.ParseIPAddr(r.ip)
	ctx := cedar.RecordMap{"amount": cedar.Long(r.amount), "ip": ip}
	if r.draft > 0 {
		ctx["draft"] = cedar.Boolean(r.draft == 1)
	}
	return cedar.Request{
		Principal: cedar.NewEntityUID("User", cedar.String(r.id.name)),
		Action:    cedar.NewEntityUID("Action", cedar.String(r.action)),
		Resource:  cedar.NewEntityUID("Resource", "r"),
		Context:   cedar.NewRecord(ctx),
	}
}

// ---- measurement ----

type result struct {
	name           string
	mean, p50, p99 time.Duration
	allocs         float64
}

func measure(name string, n int, fn func(i int)) result {
	for i := 0; i < min(n, 2000); i++ { // warm up
		fn(i)
	}
	lat := make([]time.Duration, n)
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		fn(i)
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	runtime.ReadMemStats(&ms1)
	slices.Sort(lat)
	return result{name: name, mean: total / time.Duration(n), p50: lat[n/2], p99: lat[n*99/100],
		allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(n)}
}

func main() {
	sizes := flag.String("policies", "10,100", "comma-separated policy counts (10 rules each, 10 identities each)")
	n := flag.Int("n", 20000, "timed decisions per engine (cedar-go without slicing runs n/10)")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		np, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || np < 1 {
			fmt.Fprintln(os.Stderr, "bad -policies:", s)
			os.Exit(2)
		}
		if err := run(np, *n); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
	}
}

func run(nPolicies, n int) error {
	rng := rand.New(rand.NewPCG(7, 11))
	pols, ids := generate(nPolicies, rng)
	reqs := requests(ids, rng, 4096)

	we, err := wardenEngine(pols)
	if err != nil {
		return fmt.Errorf("warden: %w", err)
	}
	ctx := context.Background()
	store := inmem.NewFromObject(regoData(pols))
	pq, err := rego.New(rego.Query("data.warden.allow"), rego.Module("warden.rego", regoModule(pols)), rego.Store(store)).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("opa: %w", err)
	}
	cs, err := cedarBuild(pols, ids)
	if err != nil {
		return fmt.Errorf("cedar: %w", err)
	}

	wreqs := make([]*policy.Request, len(reqs))
	oreqs := make([]map[string]any, len(reqs))
	creqs := make([]cedar.Request, len(reqs))
	for i, r := range reqs {
		wreqs[i], oreqs[i], creqs[i] = wardenRequest(r), regoInput(r), cedarRequest(r)
	}

	// Same decisions first: a benchmark of engines that disagree measures nothing.
	allowed := 0
	for i := range reqs {
		w := we.Decide(ctx, wreqs[i]).Effect == policy.Allow
		rs, err := pq.Eval(ctx, rego.EvalInput(oreqs[i]))
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("opa eval: %v", err)
		}
		o := rs[0].Expressions[0].Value.(bool)
		c, _ := cs.all.IsAuthorized(cs.entities, creqs[i])
		cs2, _ := cs.sliced[reqs[i].id.name].IsAuthorized(cs.entities, creqs[i])
		if w != o || w != bool(c) || w != bool(cs2) {
			return fmt.Errorf("engines disagree on request %d (%+v): warden %v, opa %v, cedar %v, cedar sliced %v", i, reqs[i], w, o, c, cs2)
		}
		if w {
			allowed++
		}
	}

	m := len(reqs)
	results := []result{
		measure("warden (internal/policy)", n, func(i int) { we.Decide(ctx, wreqs[i%m]) }),
		measure("opa v1.22.3 (prepared query)", n, func(i int) { _, _ = pq.Eval(ctx, rego.EvalInput(oreqs[i%m])) }),
		measure("cedar-go v1.9.1 (sliced by principal)", n, func(i int) { cs.sliced[reqs[i%m].id.name].IsAuthorized(cs.entities, creqs[i%m]) }),
		measure("cedar-go v1.9.1 (whole policy set)", max(n/10, 100), func(i int) { cs.all.IsAuthorized(cs.entities, creqs[i%m]) }),
	}
	fmt.Printf("\n%d policies, %d rules, %d identities, %d requests (%d%% allowed); all engines agree on every decision\n\n",
		nPolicies, nPolicies*10, len(ids), m, allowed*100/m)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tmean\tp50\tp99\tallocs/op\tp50 vs warden\t")
	base := results[0].p50
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%.1fx\t\n", r.name, r.mean.Round(10*time.Nanosecond), r.p50.Round(10*time.Nanosecond), r.p99.Round(10*time.Nanosecond), r.allocs, float64(r.p50)/float64(base))
	}
	return tw.Flush()
}
