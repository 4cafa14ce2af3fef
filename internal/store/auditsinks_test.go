package store_test

import (
	"context"
	"testing"
	"time"

	"warden/internal/store"
	"warden/internal/wardentest"
)

func TestAuditSinkCursors(t *testing.T) {
	ctx := context.Background()
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		seq, err := st.AuditSinkCursor(ctx, "siem")
		if err != nil || seq != 0 {
			t.Fatalf("new cursor = %d, %v; want 0", seq, err)
		}
		// Compare-and-set: only the replica that read 0 first moves it.
		if ok, err := st.AdvanceAuditSinkCursor(ctx, "siem", 0, 10); err != nil || !ok {
			t.Fatalf("advance 0->10: %v %v", ok, err)
		}
		if ok, err := st.AdvanceAuditSinkCursor(ctx, "siem", 0, 7); err != nil || ok {
			t.Fatalf("a stale advance 0->7 moved the cursor: %v %v", ok, err)
		}
		if seq, err := st.AuditSinkCursor(ctx, "siem"); err != nil || seq != 10 {
			t.Fatalf("cursor after advance = %d, %v; want 10 (reading must not reset it)", seq, err)
		}
		if seq, _ := st.AuditSinkCursor(ctx, "other"); seq != 0 {
			t.Fatalf("cursors are per sink: other = %d", seq)
		}
		// Leases: one owner at a time until the lease ends or is released.
		now := time.Now()
		if ok, err := st.ClaimAuditSink(ctx, "siem", "a", now, now.Add(30*time.Second)); err != nil || !ok {
			t.Fatalf("a claims: %v %v", ok, err)
		}
		if ok, _ := st.ClaimAuditSink(ctx, "siem", "b", now, now.Add(30*time.Second)); ok {
			t.Fatal("b took a live lease")
		}
		if ok, _ := st.ClaimAuditSink(ctx, "siem", "a", now, now.Add(30*time.Second)); !ok {
			t.Fatal("a could not renew its lease")
		}
		if ok, _ := st.ClaimAuditSink(ctx, "siem", "b", now.Add(31*time.Second), now.Add(61*time.Second)); !ok {
			t.Fatal("b could not take an expired lease")
		}
		if err := st.ReleaseAuditSink(ctx, "siem", "a"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := st.ClaimAuditSink(ctx, "siem", "a", now.Add(32*time.Second), now.Add(62*time.Second)); ok {
			t.Fatal("a's release ended b's lease")
		}
		if err := st.ReleaseAuditSink(ctx, "siem", "b"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := st.ClaimAuditSink(ctx, "siem", "a", now.Add(32*time.Second), now.Add(62*time.Second)); !ok {
			t.Fatal("a could not claim a released lease")
		}
	})
}

// LowestSinkCursor looks at every cursor row, configured here or not.
func TestLowestSinkCursor(t *testing.T) {
	ctx := context.Background()
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		if name, seq, ok, err := st.LowestSinkCursor(ctx); err != nil || ok || name != "" || seq != 0 {
			t.Fatalf("no cursors: %q %d %v %v; want ok=false", name, seq, ok, err)
		}
		for name, to := range map[string]int64{"zeta": 40, "alpha": 25, "mid": 30} {
			if _, err := st.AuditSinkCursor(ctx, name); err != nil {
				t.Fatal(err)
			}
			if ok, err := st.AdvanceAuditSinkCursor(ctx, name, 0, to); err != nil || !ok {
				t.Fatalf("advance %s: %v %v", name, ok, err)
			}
		}
		if name, seq, ok, err := st.LowestSinkCursor(ctx); err != nil || !ok || name != "alpha" || seq != 25 {
			t.Fatalf("lowest = %q %d %v %v; want alpha 25", name, seq, ok, err)
		}
		// A sink that has delivered nothing yet (at 0) is the lowest.
		if _, err := st.AuditSinkCursor(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		if name, seq, ok, err := st.LowestSinkCursor(ctx); err != nil || !ok || name != "new" || seq != 0 {
			t.Fatalf("lowest = %q %d %v %v; want new 0", name, seq, ok, err)
		}
	})
}
