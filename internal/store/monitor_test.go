package store_test

import (
	"testing"
	"time"

	"warden"
	"warden/internal/monitor"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func newFinding(identityID string, sev monitor.Severity, det string, at time.Time) *monitor.Finding {
	return &monitor.Finding{ID: warden.NewID(warden.PrefixFinding), IdentityID: identityID, IdentityName: "agent", Owner: "alice@example.com",
		Detector: det, Severity: sev, Explanation: "something unusual", Action: "gmail:messages.send",
		Evidence: map[string]any{"count": 42.0}, FirstEventAt: at.Add(-time.Second), DetectedAt: at, ActionTaken: "alert", Status: monitor.StatusOpen}
}

func TestMonitorStore(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, s *store.Store) {
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		a, b := warden.NewID(warden.PrefixIdentity), warden.NewID(warden.PrefixIdentity)
		var all []*monitor.Finding
		for i := range 25 {
			id, sev, det := a, monitor.High, monitor.DetRateSpike
			if i%2 == 1 {
				id, sev, det = b, monitor.Low, monitor.DetNewClient
			}
			f := newFinding(id, sev, det, base.Add(time.Duration(i/3)*time.Second)) // equal times: the id breaks ties
			if err := s.CreateFinding(ctx, f); err != nil {
				t.Fatal(err)
			}
			all = append(all, f)
		}
		// Round trip.
		got, err := s.GetFinding(ctx, all[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Explanation != "something unusual" || got.Evidence["count"] != 42.0 || !got.DetectedAt.Equal(all[0].DetectedAt) ||
			!got.FirstEventAt.Equal(all[0].FirstEventAt) || got.ContainedAt != nil || got.Severity != monitor.High {
			t.Fatalf("round trip: %+v", got)
		}
		if _, err := s.GetFinding(ctx, "fnd_missing"); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("missing: %v", err)
		}
		// Pages cover everything exactly once, newest first.
		seen := map[string]bool{}
		cursor, pages := "", 0
		var prev *monitor.Finding
		for {
			page, next, err := s.ListFindings(ctx, monitor.Filter{Limit: 7, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, f := range page {
				if seen[f.ID] {
					t.Fatalf("%s twice", f.ID)
				}
				seen[f.ID] = true
				if prev != nil && (f.DetectedAt.After(prev.DetectedAt) || (f.DetectedAt.Equal(prev.DetectedAt) && f.ID > prev.ID)) {
					t.Fatalf("order: %v %s after %v %s", f.DetectedAt, f.ID, prev.DetectedAt, prev.ID)
				}
				prev = f
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != 25 || pages != 4 {
			t.Fatalf("saw %d in %d pages", len(seen), pages)
		}
		// Filters.
		for _, c := range []struct {
			f    monitor.Filter
			want int
		}{
			{monitor.Filter{IdentityID: a}, 13},
			{monitor.Filter{Severity: []monitor.Severity{monitor.Low}}, 12},
			{monitor.Filter{Severity: []monitor.Severity{monitor.Low, monitor.High}}, 25},
			{monitor.Filter{Detector: monitor.DetNewClient, IdentityID: b}, 12},
			{monitor.Filter{Detector: monitor.DetNewClient, IdentityID: a}, 0},
			{monitor.Filter{Owner: "bob@example.com"}, 0},
			{monitor.Filter{Status: monitor.StatusResolved}, 0},
		} {
			c.f.Limit = 100
			got, _, err := s.ListFindings(ctx, c.f)
			if err != nil || len(got) != c.want {
				t.Fatalf("%+v: %d findings, %v (want %d)", c.f, len(got), err, c.want)
			}
		}
		if _, _, err := s.ListFindings(ctx, monitor.Filter{Limit: 5, Cursor: "!!"}); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("bad cursor: %v", err)
		}
		// Compare-and-set on the status.
		f := all[3]
		now := base.Add(time.Hour)
		f.Status, f.AckedBy, f.AckedAt = monitor.StatusAcknowledged, "admin:root", &now
		if err := s.UpdateFinding(ctx, f, monitor.StatusOpen); err != nil {
			t.Fatal(err)
		}
		f.Status = monitor.StatusResolved
		if err := s.UpdateFinding(ctx, f, monitor.StatusOpen); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("stale from: %v", err)
		}
		ghost := newFinding(a, monitor.Low, monitor.DetNewClient, now)
		if err := s.UpdateFinding(ctx, ghost, monitor.StatusOpen); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("ghost: %v", err)
		}
		got, _ = s.GetFinding(ctx, f.ID)
		if got.Status != monitor.StatusAcknowledged || got.AckedBy != "admin:root" || got.AckedAt == nil || !got.AckedAt.Equal(now) {
			t.Fatalf("after ack: %+v", got)
		}
		if err := s.CreateFinding(ctx, all[0]); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("duplicate id: %v", err)
		}

		// Baselines upsert.
		snaps := []monitor.Snapshot{{IdentityID: a, Data: []byte(`{"v":1}`), UpdatedAt: base}, {IdentityID: b, Data: []byte(`{"v":1,"x":2}`), UpdatedAt: base}}
		if err := s.SaveBaselines(ctx, snaps); err != nil {
			t.Fatal(err)
		}
		snaps[0].Data = []byte(`{"v":1,"calls":3}`)
		if err := s.SaveBaselines(ctx, snaps[:1]); err != nil {
			t.Fatal(err)
		}
		loaded, err := s.LoadBaselines(ctx)
		if err != nil || len(loaded) != 2 {
			t.Fatalf("load: %d %v", len(loaded), err)
		}
		byID := map[string]string{}
		for _, sn := range loaded {
			byID[sn.IdentityID] = string(sn.Data)
		}
		if byID[a] != `{"v":1,"calls":3}` || byID[b] != `{"v":1,"x":2}` {
			t.Fatalf("loaded %v", byID)
		}
	})
}
