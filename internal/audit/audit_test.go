package audit_test

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func TestAppendQueryVerify(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		ev := decided(0)
		ev.ActorRoles = []string{"admin", "security"}
		ev.ApprovalID, ev.CredentialID, ev.TraceID = "apr_1", "cred_1", "trace-1"
		ev.Outcome = audit.Outcome{Status: 201, Latency: 1234 * time.Microsecond}
		ev.Detail = json.RawMessage(`{ "to" : ["a@example.com"], "n": 3 }`)
		r1 := e.append(t, ev)
		r2 := e.append(t, decided(1))
		if r1.Seq != 1 || r2.Seq != 2 || r1.Hash == r2.Hash {
			t.Fatalf("receipts %+v %+v", r1, r2)
		}
		got, next, err := e.log.Query(ctx, audit.Filter{Identity: "nhi_agent"}, "")
		if err != nil || next != "" || len(got) != 2 {
			t.Fatalf("query: %v %q %d", err, next, len(got))
		}
		if got[0].Seq != 2 || got[1].Seq != 1 {
			t.Fatalf("want newest first, got %d,%d", got[0].Seq, got[1].Seq)
		}
		g := got[1]
		if g.Hash != r1.Hash || g.PrevHash != (audit.Hash{}) || got[0].PrevHash != r1.Hash {
			t.Fatal("hashes do not chain")
		}
		if g.Outcome.Status != 201 || g.Outcome.Latency != 1234*time.Microsecond || string(g.Detail) != `{"to":["a@example.com"],"n":3}` ||
			g.ApprovalID != "apr_1" || len(g.ActorRoles) != 2 || g.Request.ClientIP != "10.0.0.7" || g.V != audit.Version1 {
			t.Fatalf("round trip lost fields: %+v", g)
		}
		h, _, _ := audit.ComputeHash(nil, &g)
		if h != g.Hash {
			t.Fatal("stored event does not hash to its hash")
		}
		rep := e.verify(t)
		mustOK(t, rep)
		if rep.Events != 2 || rep.Head.Seq != 2 || rep.Head.Hash != r2.Hash {
			t.Fatalf("report %+v", rep)
		}
	})
}

func TestConcurrentAppendersAreGapless(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, func(o *audit.Options) { o.CheckpointEvery = 500 })
		const writers, each = 32, 60
		var (
			mu   sync.Mutex
			seen = map[int64]audit.Hash{}
			wg   sync.WaitGroup
		)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					r, err := e.log.Append(ctx, decided(i))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if _, dup := seen[r.Seq]; dup {
						t.Errorf("seq %d acknowledged twice", r.Seq)
					}
					seen[r.Seq] = r.Hash
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != writers*each {
			t.Fatalf("%d receipts, want %d", len(seen), writers*each)
		}
		for s := int64(1); s <= writers*each; s++ {
			if _, ok := seen[s]; !ok {
				t.Fatalf("seq %d missing: not gapless", s)
			}
		}
		e.close(t)
		rep := e.verify(t)
		mustOK(t, rep)
		if rep.Events != writers*each || rep.CheckpointedSeq != writers*each {
			t.Fatalf("report %+v", rep)
		}
		for s, h := range seen {
			got, ok, err := st.AuditEventHash(ctx, s)
			if err != nil || !ok || got != h {
				t.Fatalf("seq %d: stored hash differs from the receipt", s)
			}
		}
	})
}

func TestAppendRefusesMalformedEvents(t *testing.T) {
	e := newEnv(t, wardentest.SQLite(t))
	for _, ev := range []audit.Event{
		{},
		{Kind: "Operation Decided"},
		{Kind: audit.KindDecided, Detail: json.RawMessage(`[1,2]`)},
		{Kind: audit.KindDecided, Detail: json.RawMessage(`{"a":`)},
	} {
		_, err := e.log.Append(ctx, ev)
		if !warden.IsCode(err, warden.CodeUnavailable) || !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("event %+v: want unavailable, got %v", ev, err)
		}
	}
	mustOK(t, e.verify(t))
	if rep := e.verify(t); rep.Events != 0 {
		t.Fatalf("refused events were written: %d", rep.Events)
	}
}
