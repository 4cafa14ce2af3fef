//go:build !race

package policy

import (
	"context"
	"testing"
)

// TestDecideAllocations keeps the hot path within its allocation budget: at
// most 10 per decision on average over the realistic set (today about 1),
// and no single request far beyond it (today at most 9-10: every CEL
// condition that reads a map or list allocates inside cel-go). The race
// detector adds allocations of its own, hence the build tag.
func TestDecideAllocations(t *testing.T) {
	set := newBenchSet(t, 100, 10, 20)
	ctx := context.Background()
	i := 0
	avg := testing.AllocsPerRun(2000, func() {
		set.engine.Decide(ctx, &set.reqs[i%len(set.reqs)])
		i++
	})
	if avg > 10 {
		t.Fatalf("Decide allocates %.1f times per call; the budget is 10", avg)
	}
	var worst float64
	for j := range set.reqs[:500] {
		req := &set.reqs[j]
		if n := testing.AllocsPerRun(5, func() { set.engine.Decide(ctx, req) }); n > worst {
			worst = n
		}
	}
	if worst > 14 {
		t.Fatalf("the worst request allocates %.0f times", worst)
	}
	t.Logf("allocations per decision: average %.2f, worst %.0f", avg, worst)
}
