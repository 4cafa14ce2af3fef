package store_test

import (
	"context"
	"testing"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func TestAuditStore(t *testing.T) {
	ctx := context.Background()
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		if err := st.PrepareAudit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.PrepareAudit(ctx); err != nil {
			t.Fatalf("PrepareAudit is not idempotent: %v", err)
		}
		ev := &audit.Event{Seq: 1, V: 1, ID: "evt_1", Kind: "operation.decided", Time: time.Now().UTC().Truncate(time.Microsecond), Reason: "x"}
		ev.Hash[0] = 1
		err := st.AppendAudit(ctx, 0, func(h audit.Head, _ []audit.PendingChange) (audit.Batch, error) {
			if h.Seq != 0 || !h.Hash.IsZero() {
				t.Fatalf("fresh head %+v", h)
			}
			return audit.Batch{Events: []*audit.Event{ev}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := st.AuditHead(ctx); h.Seq != 1 || h.Hash != ev.Hash {
			t.Fatalf("head %+v", h)
		}
		// Append-only: edits and deletions are refused by the database.
		for _, q := range []string{`UPDATE audit_events SET reason = 'y'`, `DELETE FROM audit_events`} {
			if _, err := st.DB().ExecContext(ctx, q); err == nil {
				t.Fatalf("%s was allowed", q)
			}
		}
		if st.Engine() == store.Postgres {
			if _, err := st.DB().ExecContext(ctx, `TRUNCATE audit_events`); err == nil {
				t.Fatal("TRUNCATE was allowed")
			}
		}
		// Checkpoints: one per seq, a repeat is not an error.
		c := audit.Checkpoint{Seq: 1, Hash: ev.Hash, Time: time.Now(), KeyID: "sign:audit.1", Sig: make([]byte, 64)}
		if err := st.InsertCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := st.InsertCheckpoint(ctx, c); err != nil {
			t.Fatalf("repeat checkpoint: %v", err)
		}
		if cps, _ := st.Checkpoints(ctx); len(cps) != 1 || cps[0].Hash != ev.Hash {
			t.Fatalf("checkpoints %+v", cps)
		}
		if _, err := st.DB().ExecContext(ctx, `DELETE FROM audit_checkpoints`); err == nil {
			t.Fatal("deleting a checkpoint was allowed")
		}
		// Keys: not found, then stored once.
		if _, err := st.AuditKey(ctx, "hmac.1"); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("missing key: %v", err)
		}
		if err := st.InsertAuditKey(ctx, "hmac.1", []byte("sealed"), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := st.InsertAuditKey(ctx, "hmac.1", []byte("other"), time.Now()); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("second insert: %v", err)
		}
	})
}
