package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"warden"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// sqlExec runs attacker SQL with "?" placeholders on either engine.
func sqlExec(t *testing.T, st *store.Store, q string, args ...any) {
	t.Helper()
	if _, err := st.DB().ExecContext(ctx, st.Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// unguard checks the append-only guards refuse edits, then removes them as
// an attacker with the database owner's rights would.
func unguard(t *testing.T, st *store.Store) {
	t.Helper()
	for _, q := range []string{`UPDATE audit_events SET reason = 'x' WHERE seq = 1`, `DELETE FROM audit_events WHERE seq = 1`} {
		if _, err := st.DB().ExecContext(ctx, q); err == nil {
			t.Fatalf("%s was not refused: events are not append-only", q)
		}
	}
	if st.Engine() == store.Postgres {
		sqlExec(t, st, `ALTER TABLE audit_events DISABLE TRIGGER USER`)
		sqlExec(t, st, `ALTER TABLE audit_checkpoints DISABLE TRIGGER USER`)
		return
	}
	for _, tr := range []string{"audit_events_no_update", "audit_events_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete"} {
		sqlExec(t, st, `DROP TRIGGER `+tr)
	}
}

// forgeRow inserts an event computed like the writer would, linked to prev.
func forgeRow(t *testing.T, st *store.Store, seq int64, prev audit.Hash) audit.Hash {
	t.Helper()
	ev := decided(0)
	ev.ID, ev.Seq, ev.V, ev.PrevHash, ev.Reason = "evt_forged", seq, audit.Version1, prev, "forged"
	ev.Time = ev.Time.UTC()
	h, _, _ := audit.ComputeHash(nil, &ev)
	sqlExec(t, st, `INSERT INTO audit_events (seq, v, id, time, kind, actor, identity, action, reason, prev_hash, hash) VALUES (?, 1, ?, 0, ?, ?, ?, ?, ?, ?, ?)`,
		seq, ev.ID, ev.Kind, ev.Actor, ev.Identity, ev.Action, ev.Reason, prev[:], h[:])
	// The canonical encoding covers every column; the forged row must hash
	// exactly as stored, so re-read and re-hash it.
	var got audit.Event
	err := st.ScanAudit(ctx, seq-1, func(e *audit.Event) error {
		if e.Seq == seq {
			got = *e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ = audit.ComputeHash(nil, &got)
	if st.Engine() == store.Postgres {
		sqlExec(t, st, `ALTER TABLE audit_events DISABLE TRIGGER USER`)
	}
	sqlExec(t, st, `UPDATE audit_events SET hash = ? WHERE seq = ?`, h[:], seq)
	return h
}

func hashAt(t *testing.T, st *store.Store, seq int64) audit.Hash {
	t.Helper()
	h, ok, err := st.AuditEventHash(ctx, seq)
	if err != nil || !ok {
		t.Fatalf("no event %d: %v", seq, err)
	}
	return h
}

func wantProblem(t *testing.T, rep audit.Report, seq int64, kind audit.ProblemKind) {
	t.Helper()
	if rep.OK || rep.Problem == nil {
		t.Fatalf("tampering not detected (want %s at seq %d): %+v", kind, seq, rep)
	}
	if rep.Problem.Seq != seq || rep.Problem.Kind != kind {
		t.Fatalf("got %s at seq %d (%s), want %s at seq %d", rep.Problem.Kind, rep.Problem.Seq, rep.Problem.Message, kind, seq)
	}
}

func TestTamperingIsPinpointed(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, e *env)
		seq    int64
		kind   audit.ProblemKind
	}{
		{"edited", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `UPDATE audit_events SET decision = 'deny' WHERE seq = 7`)
		}, 7, audit.ProblemEdited},
		{"edited detail", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `UPDATE audit_events SET detail = '{"x":2}' WHERE seq = 12`)
		}, 12, audit.ProblemEdited},
		{"deleted", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq = 7`)
		}, 7, audit.ProblemDeleted},
		{"deleted and renumbered", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq = 7`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq + 1000 WHERE seq > 7`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`)
		}, 7, audit.ProblemDeleted},
		{"inserted with renumbering", func(t *testing.T, e *env) {
			prev := hashAt(t, e.st, 6)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 7`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000`)
			forgeRow(t, e.st, 7, prev)
		}, 7, audit.ProblemInserted},
		{"replaced", func(t *testing.T, e *env) {
			prev := hashAt(t, e.st, 6)
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq = 7`)
			forgeRow(t, e.st, 7, prev)
		}, 8, audit.ProblemInserted},
		{"inserted at the end", func(t *testing.T, e *env) {
			forgeRow(t, e.st, 21, hashAt(t, e.st, 20))
		}, 21, audit.ProblemInserted},
		{"reordered", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `UPDATE audit_events SET seq = -7 WHERE seq = 7`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = 7 WHERE seq = 8`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = 8 WHERE seq = -7`)
		}, 7, audit.ProblemReordered},
		{"newest truncated, head fixed, database checkpoints deleted", func(t *testing.T, e *env) {
			h := hashAt(t, e.st, 15)
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq > 15`)
			sqlExec(t, e.st, `UPDATE audit_head SET seq = 15, hash = ? WHERE id = 1`, h[:])
			sqlExec(t, e.st, `DELETE FROM audit_checkpoints`)
		}, 16, audit.ProblemTruncated},
		{"newest truncated, head left", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq > 18`)
			sqlExec(t, e.st, `DELETE FROM audit_checkpoints`)
			os.WriteFile(e.file, nil, 0o600) // no file either: the head row still tells
		}, 19, audit.ProblemTruncated},
		{"forged checkpoint signature in the file", func(t *testing.T, e *env) {
			data, _ := os.ReadFile(e.file)
			lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
			var m map[string]any
			json.Unmarshal(lines[len(lines)-1], &m)
			m["seq"] = 19 // claim another seq with the old signature
			b, _ := json.Marshal(m)
			lines[len(lines)-1] = b
			os.WriteFile(e.file, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600)
		}, 19, audit.ProblemBadSignature},
		{"forged checkpoint in the database", func(t *testing.T, e *env) {
			sqlExec(t, e.st, `UPDATE audit_checkpoints SET sig = ? WHERE seq = 10`, make([]byte, 64))
		}, 10, audit.ProblemBadSignature},
		{"chain rewritten and re-signed with another key", func(t *testing.T, e *env) {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			c := audit.Checkpoint{Seq: 20, Hash: hashAt(t, e.st, 20), KeyID: "sign:audit.9"}
			c.Sig = ed25519.Sign(priv, c.SignedMessage())
			c.PublicKey = priv.Public().(ed25519.PublicKey)
			b, _ := audit.MarshalCheckpoint(c)
			os.WriteFile(e.file, append(b, '\n'), 0o600)
		}, 20, audit.ProblemUnknownKey},
		{"rolled back to an older copy", func(t *testing.T, e *env) {
			restoreSnapshot(t, e.st)
		}, 11, audit.ProblemTruncated},
	}
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var s *store.Store
				if st.Engine() == store.Postgres {
					s = wardentest.Postgres(t)
				} else {
					s = wardentest.SQLite(t)
				}
				e := newEnv(t, s)
				e.appendN(t, 10)
				if _, err := e.log.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				takeSnapshot(t, s)
				e.appendN(t, 10)
				e.close(t) // final checkpoint at 20
				mustOK(t, e.verify(t))
				unguard(t, s)
				tc.tamper(t, e)
				wantProblem(t, e.verify(t), tc.seq, tc.kind)
			})
		}
	})
}

func takeSnapshot(t *testing.T, st *store.Store) {
	for _, tb := range []string{"audit_events", "audit_head", "audit_checkpoints"} {
		sqlExec(t, st, `CREATE TABLE snap_`+tb+` AS SELECT * FROM `+tb)
	}
}

// restoreSnapshot puts back the copy takeSnapshot made, as restoring an
// older backup of the database would.
func restoreSnapshot(t *testing.T, st *store.Store) {
	for _, tb := range []string{"audit_events", "audit_head", "audit_checkpoints"} {
		sqlExec(t, st, `DELETE FROM `+tb)
		sqlExec(t, st, `INSERT INTO `+tb+` SELECT * FROM snap_`+tb)
	}
}

// A database rolled back behind the checkpoint file stops the log from
// opening (and so the server from starting); rolled back and written again,
// it no longer matches the signed checkpoint.
func TestRollbackIsRefusedAtOpenAndDetected(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		e.appendN(t, 10)
		e.log.Checkpoint(ctx)
		takeSnapshot(t, st)
		e.appendN(t, 10)
		e.close(t)
		unguard(t, st)
		restoreSnapshot(t, st)

		_, err := audit.Open(ctx, e.opts)
		if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("Open on a rolled-back database: %v", err)
		}
		// An attacker who also hides the checkpoint file can write again...
		o := e.opts
		o.CheckpointFile = ""
		l, err := audit.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 15; i++ {
			if _, err := l.Append(ctx, decided(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close(ctx)
		// ...but the copy of the file kept elsewhere no longer matches.
		wantProblem(t, e.verify(t), 20, audit.ProblemRewritten)
		if _, err := audit.Open(ctx, e.opts); !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("Open on a rewritten database: %v", err)
		}
	})
}

func TestCheckpoints(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, func(o *audit.Options) { o.CheckpointEvery = 25 })
		e.appendN(t, 100)
		e.close(t)
		cps, torn, err := audit.ReadCheckpointFile(e.file)
		if err != nil || torn {
			t.Fatal(err, torn)
		}
		if len(cps) < 2 || cps[len(cps)-1].Seq != 100 {
			t.Fatalf("want checkpoints ending at the final one (seq 100), got %d ending at %d", len(cps), cps[len(cps)-1].Seq)
		}
		for _, c := range cps {
			pub, ok := e.keys.PublicKey(c.KeyID)
			if !ok || !pub.Equal(c.PublicKey) || !ed25519.Verify(pub, c.SignedMessage(), c.Sig) || c.Hash != hashAt(t, st, c.Seq) {
				t.Fatalf("checkpoint %d does not check out", c.Seq)
			}
		}
		db, _ := st.Checkpoints(ctx)
		if len(db) != len(cps) {
			t.Fatalf("database holds %d checkpoints, file %d", len(db), len(cps))
		}
		rep := e.verify(t)
		mustOK(t, rep)
		if rep.CheckpointedSeq != 100 || rep.Checkpoints != 2*len(cps) {
			t.Fatalf("report %+v", rep)
		}

		// A crash mid-write leaves a torn last line: it is ignored by
		// verify and cut when the log opens again.
		f, _ := os.OpenFile(e.file, os.O_APPEND|os.O_WRONLY, 0)
		f.Write([]byte(`{"v":1,"seq":10`))
		f.Close()
		if _, torn, err := audit.ReadCheckpointFile(e.file); err != nil || !torn {
			t.Fatalf("torn line: %v %v", err, torn)
		}
		e.open(t)
		e.append(t, decided(1))
		e.close(t)
		cps2, torn, err := audit.ReadCheckpointFile(e.file)
		if err != nil || torn || len(cps2) != len(cps)+1 {
			t.Fatalf("after reopen: %d checkpoints, torn %v, %v", len(cps2), torn, err)
		}
		// A line that is not a checkpoint is damage, not a crash.
		os.WriteFile(e.file, []byte("{\"v\":1,\"seq\":1}\nnot json\n"), 0o600)
		if _, err := audit.Open(ctx, e.opts); !errors.Is(err, audit.ErrTampered) || warden.ErrorCode(err) != warden.CodeInternal {
			t.Fatalf("damaged file: %v", err)
		}
	})
}
