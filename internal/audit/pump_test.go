package audit_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/identity"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var root = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}

func adminEvents(t *testing.T, e *env) []audit.Event {
	t.Helper()
	evs, _, err := e.log.Query(ctx, audit.Filter{Kind: audit.KindAdminChange, Ascending: true, Limit: 1000}, "")
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func unaudited(t *testing.T, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM changes WHERE audit_seq IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Admin changes committed while no log runs (a crash between a change's
// commit and its audit event) are adopted when the log opens again, each
// exactly once, whatever appends run beside the pump.
func TestChangesAreAdoptedExactlyOnce(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, func(o *audit.Options) { o.PumpInterval = time.Hour })
		e.close(t)
		ids := identity.New(identity.Options{Store: st})
		for _, name := range []string{"agent-a", "agent-b", "agent-c"} {
			if _, err := ids.Create(ctx, root, identity.CreateInput{Name: name, Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
				t.Fatal(err)
			}
		}
		if unaudited(t, st) != 3 {
			t.Fatalf("want 3 changes waiting in the outbox")
		}
		e.open(t)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					if _, err := e.log.Append(ctx, decided(i)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := 0; i < 5; i++ {
			if _, err := e.log.Pump(ctx); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		evs := adminEvents(t, e)
		if len(evs) != 3 || unaudited(t, st) != 0 {
			t.Fatalf("want each of 3 changes audited once, got %d events, %d unaudited", len(evs), unaudited(t, st))
		}
		id, _ := ids.Lookup(ctx, "agent-b")
		found := false
		for _, ev := range evs {
			if ev.Actor != root.Actor() || ev.Action != "identity.create" || ev.Decision != "applied" {
				t.Fatalf("admin event lacks actor or action: %+v", ev)
			}
			found = found || (ev.Identity == id.ID && ev.Resource == "identity:"+id.ID)
		}
		if !found {
			t.Fatal("the change's target is not the event's identity")
		}
		e.close(t)
		mustOK(t, e.verify(t))
	})
}

// On PostgreSQL changes commit out of seq order: a change with a lower seq
// may commit after a higher one was adopted. It must still be adopted.
func TestLateCommittedChangeIsNotSkipped(t *testing.T) {
	st := wardentest.Postgres(t)
	e := newEnv(t, st, func(o *audit.Options) { o.PumpInterval = time.Hour })
	txA, err := st.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.ExecContext(ctx, `INSERT INTO changes (id, at, actor, action, target_kind, target) VALUES ('chg_a', 1, 'admin:root', 'policy.put', 'policy', 'a')`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `INSERT INTO changes (id, at, actor, action, target_kind, target) VALUES ('chg_b', 2, 'admin:root', 'policy.put', 'policy', 'b')`); err != nil {
		t.Fatal(err)
	}
	if n, err := e.log.Pump(ctx); err != nil || n != 1 {
		t.Fatalf("first pump: %d %v", n, err)
	}
	if err := txA.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.log.Pump(ctx); err != nil || n != 1 {
		t.Fatalf("the change that committed late was skipped: pump adopted %d (%v)", n, err)
	}
	evs := adminEvents(t, e)
	if len(evs) != 2 || evs[0].ID != "chg_b" || evs[1].ID != "chg_a" {
		t.Fatalf("events %+v", evs)
	}
}

func TestMACIsKeyedAndStable(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	a, b := e.log.MAC("s3cret-token"), e.log.MAC("other")
	if a == b || len(a) != len("hmac-sha256:")+64 || a[:12] != "hmac-sha256:" {
		t.Fatalf("macs %q %q", a, b)
	}
	e.close(t)
	e.open(t)
	if e.log.MAC("s3cret-token") != a {
		t.Fatal("the MAC of a value changed across a restart")
	}
	other := newEnv(t, wardentest.SQLite(t))
	if other.log.MAC("s3cret-token") == a {
		t.Fatal("two installations share a MAC key")
	}
}

// A change whose detail is too large for an event is adopted with a digest
// of it; it never blocks the outbox (and with it every append).
func TestOversizedChangeDoesNotBlockTheLog(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st, func(o *audit.Options) { o.PumpInterval = time.Hour })
	big := `{"doc":"` + strings.Repeat("x", 70<<10) + `"}`
	sqlExec(t, st, `INSERT INTO changes (id, at, actor, action, target_kind, target, detail) VALUES ('chg_big', 1, 'admin:root', 'policy.put', 'policy', 'p', ?)`, big)
	if r := e.append(t, decided(0)); r.Seq != 2 {
		t.Fatalf("append after an oversized change: seq %d", r.Seq)
	}
	evs := adminEvents(t, e)
	if len(evs) != 1 || !strings.Contains(string(evs[0].Detail), "detail_omitted") || !strings.Contains(string(evs[0].Detail), "sha256") {
		t.Fatalf("oversized change: %+v", evs)
	}
	mustOK(t, e.verify(t))
}

// A reader sees the admin change it just made: Query adopts pending
// changes first (the periodic pump is off here).
func TestQueryReadsYourChanges(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, func(o *audit.Options) { o.PumpInterval = time.Hour })
		ids := identity.New(identity.Options{Store: st})
		id, err := ids.Create(ctx, root, identity.CreateInput{Name: "fresh", Type: "ai_agent", Owner: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := e.log.Query(ctx, audit.Filter{Identity: id.ID}, "")
		if err != nil || len(evs) != 1 || evs[0].Action != "identity.create" {
			t.Fatalf("the change is not visible to the next query: %v %+v", err, evs)
		}
	})
}
