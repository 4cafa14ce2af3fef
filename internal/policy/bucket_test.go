package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestBucketMatchesBruteForce checks the flat action index against the
// definition: a bucket's candidates for an action are exactly the rules of its
// policies with a pattern that matches the action, in deciding order (policy
// name, then rule order), each once.
func TestBucketMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	conns := []string{"svc-00", "svc-01", "svc-02", "gmail", "gmail-x"}
	ops := []string{"items.get", "items.list", "admin.users", "messages.send", "x"}
	pats := []string{"*", "*:*", "svc-0*:items.*", "*:admin.*", "gmail:*", "gmail*:messages.send", "*:*.get", "svc-01:x"}
	for _, c := range conns {
		for _, o := range ops {
			pats = append(pats, c+":"+o)
		}
	}
	// Names that share their first eight bytes, names that are prefixes of
	// others, and names that differ early: before must order them all.
	names := []string{"a", "ab", "abcdefgh", "abcdefgh-1", "abcdefgh-2", "abcdefgi", "b", "pol-00001", "pol-100000"}
	for round := 0; round < 200; round++ {
		var pols []*Policy
		for _, name := range names {
			if rng.IntN(3) == 0 {
				continue
			}
			var b strings.Builder
			fmt.Fprintf(&b, "apiVersion: warden/v1\nkind: Policy\nname: %s\nsubjects: [{identity: bot}]\nrules:\n", name)
			for r := 0; r < 1+rng.IntN(6); r++ {
				fmt.Fprintf(&b, "  - id: r%d\n    effect: allow\n    actions: [", r)
				for j := 0; j < 1+rng.IntN(3); j++ {
					if j > 0 {
						b.WriteString(", ")
					}
					fmt.Fprintf(&b, "%q", pats[rng.IntN(len(pats))])
				}
				b.WriteString("]\n")
			}
			pols = append(pols, mustPolicy(t, b.String()))
		}
		slices.SortFunc(pols, func(a, b *Policy) int { return strings.Compare(a.name, b.name) })
		byName := map[string]*Policy{}
		for _, p := range pols {
			byName[p.name] = p
		}
		s := buildSnapshot(byName)
		for _, c := range conns {
			for _, o := range ops {
				action := c + ":" + o
				var want []string
				for _, p := range pols {
					for _, r := range p.rules {
						if r.matchesAction(c, o) {
							want = append(want, p.name+"/"+r.id)
						}
					}
				}
				var got []string
				for _, ref := range s.candidates(nil, &Identity{Name: "bot"}, action, c, o, false) {
					got = append(got, ref.r.pol.name+"/"+ref.r.id)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d, %s: candidates %v, want %v", round, action, got, want)
				}
			}
		}
	}
}
