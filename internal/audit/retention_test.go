package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// verifyArchives runs Verify like the offline CLI with --archive FILE...
func (e *env) verifyArchives(t *testing.T, paths ...string) audit.Report {
	t.Helper()
	o := audit.VerifyOptions{PublicKey: e.keys.PublicKey}
	if cps, _, err := audit.ReadCheckpointFile(e.file); err == nil {
		o.Checkpoints = cps
	}
	for _, p := range paths {
		a, err := audit.ReadArchiveFile(p)
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		o.Archives = append(o.Archives, a)
	}
	rep, err := audit.Verify(ctx, e.st, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func (e *env) checkpoint(t *testing.T) {
	t.Helper()
	if _, err := e.log.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

func archive(t *testing.T, st audit.Store, o audit.ArchiveOptions) audit.ArchiveResult {
	t.Helper()
	res, err := audit.Archive(ctx, st, o)
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	return res
}

func countEvents(t *testing.T, st *store.Store) (n, lo int64) {
	t.Helper()
	var min *int64
	if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*), MIN(seq) FROM audit_events`).Scan(&n, &min); err != nil {
		t.Fatal(err)
	}
	if min != nil {
		lo = *min
	}
	return n, lo
}

func TestRetentionArchivesAndVerifiesAcrossTheCut(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		dir := t.TempDir()
		e.appendN(t, 10)
		e.checkpoint(t) // 10
		e.appendN(t, 10)
		e.checkpoint(t) // 20
		e.appendN(t, 5) // 21..25, after the newest checkpoint

		res := archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 16, Dir: dir, PublicKey: e.keys.PublicKey, Actor: "test"})
		if res.Skipped != "" || res.Anchor.Seq != 10 || res.Anchor.FirstSeq != 1 || res.Events != 10 ||
			res.Path != filepath.Join(dir, "audit-archive-1-10.jsonl") || res.Anchor.Actor != "test" {
			t.Fatalf("first cut: %+v", res)
		}
		if n, lo := countEvents(t, st); n != 15 || lo != 11 {
			t.Fatalf("after the cut the database holds %d events from %d, want 15 from 11", n, lo)
		}
		first := res.Path

		// Online (keyring, checkpoint file) and offline without archives:
		// the chain starts at the anchor, vouched for by the checkpoint.
		rep, err := e.log.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustOK(t, rep)
		if rep.ArchivedSeq != 10 || rep.Events != 15 || rep.Head.Seq != 25 || rep.CheckpointedSeq != 20 {
			t.Fatalf("report %+v", rep)
		}
		if !strings.Contains(strings.Join(rep.Warnings, " "), "archived by retention") {
			t.Fatalf("no warning that archived events were not checked: %v", rep.Warnings)
		}
		rep = e.verifyArchives(t, first)
		mustOK(t, rep)
		if rep.ArchivedEvents != 10 || len(rep.Warnings) != 0 {
			t.Fatalf("with the archive: %+v", rep)
		}

		// A second cut chains to the first.
		res = archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), Before: time.Now().Add(time.Hour), Dir: dir, PublicKey: e.keys.PublicKey})
		if res.Anchor.Seq != 20 || res.Anchor.FirstSeq != 11 || res.Events != 10 || res.Anchor.Actor != "system" {
			t.Fatalf("second cut: %+v", res)
		}
		second := res.Path
		mustOK(t, e.verify(t))
		rep = e.verifyArchives(t, second, first)
		mustOK(t, rep)
		if rep.ArchivedEvents != 20 || rep.ArchivedSeq != 20 {
			t.Fatalf("both archives: %+v", rep)
		}
		mustOK(t, e.verifyArchives(t, second)) // the newer one alone links to the first anchor

		// No new checkpoint: nothing to archive, and it says so.
		if res := archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 1000, Dir: dir}); res.Skipped == "" || res.Events != 0 {
			t.Fatalf("want nothing archived: %+v", res)
		}

		// Cut at the head (the final checkpoint at Close): the database
		// holds no events, and the log still opens against its checkpoint
		// file and continues the chain.
		e.close(t)
		res = archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 1000, Dir: dir, PublicKey: e.keys.PublicKey})
		if res.Anchor.Seq != 25 || res.Events != 5 {
			t.Fatalf("cut at the head: %+v", res)
		}
		if n, _ := countEvents(t, st); n != 0 {
			t.Fatalf("%d events left", n)
		}
		mustOK(t, e.verify(t))
		e.open(t)
		e.appendN(t, 3)
		e.close(t)
		rep = e.verifyArchives(t, first, second, res.Path)
		mustOK(t, rep)
		if rep.Events != 3 || rep.Head.Seq != 28 || rep.ArchivedEvents != 25 {
			t.Fatalf("after the cut at the head: %+v", rep)
		}
	})
}

func TestRetentionRespectsFloorAndMaxEvents(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		dir := t.TempDir()
		for range 4 {
			e.appendN(t, 10)
			e.checkpoint(t) // 10, 20, 30, 40
		}
		floor := int64(5)
		opts := audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 1000, Dir: dir, Floor: func(context.Context) (int64, error) { return floor, nil }}
		if res := archive(t, st, opts); res.Skipped == "" {
			t.Fatalf("a floor below every checkpoint archived something: %+v", res)
		}
		floor = 29 // the sinks have delivered up to 29: cut at 20
		if res := archive(t, st, opts); res.Anchor.Seq != 20 {
			t.Fatalf("floor 29: %+v", res)
		}
		floor = 40
		opts.MaxEvents = 10 // one checkpoint's worth per run
		if res := archive(t, st, opts); res.Anchor.Seq != 30 || res.Events != 10 {
			t.Fatalf("max events: %+v", res)
		}
		opts.MaxEvents = 5 // smaller than any step: still progresses by one checkpoint
		if res := archive(t, st, opts); res.Anchor.Seq != 40 {
			t.Fatalf("max events below a step: %+v", res)
		}
		mustOK(t, e.verify(t))
	})
}

// Retention runs beside the writer: appends keep their gapless seq and the
// chain verifies across the cut.
func TestRetentionBesideConcurrentAppends(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, func(o *audit.Options) { o.CheckpointEvery = 50 })
		dir := t.TempDir()
		e.appendN(t, 120)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := e.log.Append(ctx, decided(i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		for range 3 {
			if _, err := e.log.Archive(ctx, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 1 << 40, Dir: dir}); err != nil {
				t.Error(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		e.close(t)
		files, _ := filepath.Glob(filepath.Join(dir, "audit-archive-*.jsonl"))
		if len(files) == 0 {
			t.Fatal("nothing archived")
		}
		rep := e.verifyArchives(t, files...)
		mustOK(t, rep)
		if rep.ArchivedSeq == 0 || rep.ArchivedEvents != rep.ArchivedSeq {
			t.Fatalf("report %+v", rep)
		}
	})
}

// A failed delete transaction leaves the events in place and the file as an
// extra copy; running again rewrites the file and completes.
func TestRetentionRerunsAfterAFailedDelete(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		dir := t.TempDir()
		e.appendN(t, 10)
		e.checkpoint(t)
		e.appendN(t, 2)
		failing := &failingArchive{Store: st}
		_, err := audit.Archive(ctx, failing, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 100, Dir: dir})
		if err == nil || !warden.IsCode(err, warden.CodeUnavailable) || !strings.Contains(err.Error(), "extra copy") {
			t.Fatalf("want the delete's failure reported: %v", err)
		}
		path := filepath.Join(dir, audit.ArchiveFileName(1, 10))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the durable file is gone: %v", err)
		}
		if n, _ := countEvents(t, st); n != 12 {
			t.Fatalf("%d events left after a failed delete, want 12", n)
		}
		if anchors, _ := st.AuditAnchors(ctx); len(anchors) != 0 {
			t.Fatalf("anchor recorded by a failed transaction: %+v", anchors)
		}
		mustOK(t, e.verify(t))

		// The store refuses a cut that does not fit, atomically.
		bad := audit.Anchor{Seq: 10, FirstSeq: 1, CheckpointSeq: 10, File: "x", Time: time.Now()}
		if _, err := st.ArchiveAudit(ctx, bad); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("a cut whose hash is not the event's: %v", err)
		}
		bad.Hash, bad.FirstSeq = hashAt(t, st, 10), 2
		if _, err := st.ArchiveAudit(ctx, bad); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("a cut that does not start after the last one: %v", err)
		}
		if n, _ := countEvents(t, st); n != 12 {
			t.Fatalf("%d events left after refused cuts", n)
		}

		res := archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 100, Dir: dir})
		if res.Path != path || res.Events != 10 {
			t.Fatalf("rerun: %+v", res)
		}
		mustOK(t, e.verifyArchives(t, path))
		if left, _ := filepath.Glob(filepath.Join(dir, ".audit-archive-*")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})
}

// An archive file is never replaced: one with the same name and other
// bytes (perhaps the one a committed cut names) stops the run before
// anything is deleted.
func TestArchiveNeverReplacesAFile(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	e.appendN(t, 10)
	e.close(t)
	dir := t.TempDir()
	path := filepath.Join(dir, audit.ArchiveFileName(1, 10))
	if err := os.WriteFile(path, []byte("someone else's archive\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := audit.Archive(ctx, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 100, Dir: dir})
	if !warden.IsCode(err, warden.CodeConflict) {
		t.Fatalf("archive over another file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "someone else's archive\n" {
		t.Fatalf("the existing file was replaced")
	}
	if n, _ := countEvents(t, st); n != 10 {
		t.Fatalf("%d events left; nothing may be deleted", n)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".audit-archive-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

type failingArchive struct{ *store.Store }

func (f *failingArchive) ArchiveAudit(context.Context, audit.Anchor) (int64, error) {
	return 0, warden.Errorf(warden.CodeUnavailable, "database unavailable")
}

// A plain DELETE is refused before and after retention; only the retention
// transaction passes the guard. Databases with the old unconditional
// triggers are migrated by PrepareAudit.
func TestPlainDeleteIsStillRefused(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		e.appendN(t, 10)
		e.checkpoint(t)
		e.appendN(t, 10)
		e.close(t)
		refused := func(q string, args ...any) {
			t.Helper()
			if _, err := st.DB().ExecContext(ctx, st.Rebind(q), args...); err == nil {
				t.Fatalf("%s was not refused", q)
			}
		}
		refused(`DELETE FROM audit_events WHERE seq = 1`)
		refused(`DELETE FROM audit_events`)

		// Put back the triggers a database made before retention has.
		if st.Engine() == store.Postgres {
			sqlExec(t, st, `CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$`)
		} else {
			sqlExec(t, st, `DROP TRIGGER audit_events_no_delete`)
			sqlExec(t, st, `CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`)
		}
		if err := st.PrepareAudit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.PrepareAudit(ctx); err != nil { // idempotent
			t.Fatal(err)
		}
		res := archive(t, st, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 15, Dir: t.TempDir()})
		if res.Anchor.Seq != 10 {
			t.Fatalf("archive after migrating the triggers: %+v", res)
		}
		refused(`DELETE FROM audit_events WHERE seq = 11`)
		refused(`UPDATE audit_events SET reason = 'x' WHERE seq = 11`)
		refused(`DELETE FROM audit_anchors`)
		refused(`UPDATE audit_anchors SET hash = ?`, make([]byte, 32))
		refused(`DELETE FROM audit_checkpoints`)
		// A gate row alone does not open the guard: it must name an anchor,
		// and the rows must lie at or below it.
		sqlExec(t, st, `INSERT INTO audit_retention_gate (seq) VALUES (15)`)
		refused(`DELETE FROM audit_events WHERE seq = 11`)
		sqlExec(t, st, `DELETE FROM audit_retention_gate`)
		if st.Engine() == store.Postgres {
			refused(`TRUNCATE audit_events`)
			refused(`TRUNCATE audit_anchors`)
		}
		if n, lo := countEvents(t, st); n != 10 || lo != 11 {
			t.Fatalf("%d events from %d", n, lo)
		}
	})
}

func TestRetentionTamperingIsPinpointed(t *testing.T) {
	cases := []struct {
		name     string
		tamper   func(t *testing.T, e *env, archive string)
		archives bool // verify with the archive file
		seq      int64
		kind     audit.ProblemKind
	}{
		{"archived line edited", func(t *testing.T, e *env, path string) {
			editArchiveLine(t, path, 5, func(m map[string]any) { m["reason"] = "nothing to see" })
		}, true, 5, audit.ProblemEdited},
		{"archived line deleted", func(t *testing.T, e *env, path string) {
			editArchiveLine(t, path, 7, nil)
		}, true, 7, audit.ProblemDeleted},
		{"archived checkpoint line changed", func(t *testing.T, e *env, path string) {
			data, _ := os.ReadFile(path)
			os.WriteFile(path, append(data, '\n'), 0o600) // the events still verify, the file is not the one archived
		}, true, 20, audit.ProblemArchivedGap},
		{"anchor deleted", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.st, `DELETE FROM audit_anchors`)
		}, false, 1, audit.ProblemDeleted},
		{"anchor deleted, archive given", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.st, `DELETE FROM audit_anchors`)
		}, true, 20, audit.ProblemArchivedGap},
		{"anchor hash edited", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.st, `UPDATE audit_anchors SET hash = ?`, bytes.Repeat([]byte{7}, 32))
		}, false, 20, audit.ProblemArchivedGap},
		{"anchor moved up to hide deleted events", func(t *testing.T, e *env, _ string) {
			h := hashAt(t, e.st, 25)
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq <= 25`)
			sqlExec(t, e.st, `UPDATE audit_anchors SET seq = 25, checkpoint_seq = 25, hash = ?`, h[:])
		}, false, 25, audit.ProblemArchivedGap},
		{"anchor forged at a real checkpoint to delete events without archiving", func(t *testing.T, e *env, _ string) {
			// What someone who can write rows but holds no master key can
			// do: an anchor at a genuinely signed checkpoint, through the
			// gate. Its signature is what gives it away.
			h := hashAt(t, e.st, 30)
			sqlExec(t, e.st, `INSERT INTO audit_anchors (seq, first_seq, hash, checkpoint_seq, file, file_sha256, time, actor, key_id, sig) VALUES (30, 21, ?, 30, 'audit-archive-21-30.jsonl', ?, 0, 'system', 'sign:audit.1', ?)`,
				h[:], bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 64))
			sqlExec(t, e.st, `INSERT INTO audit_retention_gate (seq) VALUES (30)`)
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq <= 30`)
			sqlExec(t, e.st, `DELETE FROM audit_retention_gate`)
		}, false, 30, audit.ProblemArchivedGap},
		{"one more event deleted after the cut", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq = 21`)
		}, false, 21, audit.ProblemDeleted},
		{"fake event inserted at anchor+1", func(t *testing.T, e *env, _ string) {
			anchors, _ := e.st.AuditAnchors(ctx)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 21`)
			sqlExec(t, e.st, `UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000`)
			forgeRow(t, e.st, 21, anchors[0].Hash) // links to the anchor; the real 21, now 22, was written as 21
		}, false, 21, audit.ProblemInserted},
		{"event at anchor+1 replaced by one linked to the anchor", func(t *testing.T, e *env, _ string) {
			anchors, _ := e.st.AuditAnchors(ctx)
			sqlExec(t, e.st, `DELETE FROM audit_events WHERE seq = 21`)
			forgeRow(t, e.st, 21, anchors[0].Hash)
		}, false, 22, audit.ProblemInserted},
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
				e.checkpoint(t)
				e.appendN(t, 10)
				e.checkpoint(t)
				e.appendN(t, 10)
				e.close(t) // final checkpoint at 30
				res := archive(t, s, audit.ArchiveOptions{Signer: audit.KeyringSigner(e.keys), BeforeSeq: 21, Dir: t.TempDir(), PublicKey: e.keys.PublicKey})
				if res.Anchor.Seq != 20 {
					t.Fatalf("cut %+v", res)
				}
				mustOK(t, e.verify(t))
				mustOK(t, e.verifyArchives(t, res.Path))
				unguardAfterCut(t, s)
				tc.tamper(t, e, res.Path)
				var rep audit.Report
				if tc.archives {
					rep = e.verifyArchives(t, res.Path)
				} else {
					rep = e.verify(t)
				}
				wantProblem(t, rep, tc.seq, tc.kind)
			})
		}
	})
}

// unguardAfterCut is unguard for a database whose first events were
// archived: it checks the guards on what remains, then drops them (anchors
// included) as the database owner could.
func unguardAfterCut(t *testing.T, st *store.Store) {
	t.Helper()
	for _, q := range []string{`UPDATE audit_events SET reason = 'x' WHERE seq = 21`, `DELETE FROM audit_events WHERE seq = 21`, `DELETE FROM audit_anchors`} {
		if _, err := st.DB().ExecContext(ctx, q); err == nil {
			t.Fatalf("%s was not refused", q)
		}
	}
	if st.Engine() == store.Postgres {
		for _, tb := range []string{"audit_events", "audit_checkpoints", "audit_anchors"} {
			sqlExec(t, st, `ALTER TABLE `+tb+` DISABLE TRIGGER USER`)
		}
		return
	}
	for _, tr := range []string{"audit_events_no_update", "audit_events_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete", "audit_anchors_no_update", "audit_anchors_no_delete"} {
		sqlExec(t, st, `DROP TRIGGER `+tr)
	}
}

// editArchiveLine rewrites the line holding event seq (nil edit: drops it).
func editArchiveLine(t *testing.T, path string, seq int64, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Bytes()
		var m map[string]any
		json.Unmarshal(line, &m)
		if _, isEvent := m["kind"]; isEvent && m["seq"] == float64(seq) {
			found = true
			if edit == nil {
				continue
			}
			edit(m)
			line, _ = json.Marshal(m)
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	if !found {
		t.Fatalf("no event %d in %s", seq, path)
	}
	os.WriteFile(path, out.Bytes(), 0o600)
}

// The JSON Lines export decodes to events whose hashes recompute, whatever
// the detail holds: archives are written the same way.
func TestExportRoundTripsToHashes(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	ev := decided(0)
	ev.Detail = json.RawMessage(`{"html":"<b>&amp;</b>","sep":"a\u2028b","raw":"x` + "\u2029" + `y"}`)
	ev.ActorRoles = []string{"admin", ""}
	e.append(t, ev)
	ev = decided(1)
	ev.Reason = "line\nbreak <script>"
	e.append(t, ev)
	var buf bytes.Buffer
	if _, err := e.log.Export(ctx, &buf, audit.FormatJSONL, audit.Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		var got audit.Event
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if h, _, _ := audit.ComputeHash(nil, &got); h != got.Hash {
			t.Fatalf("exported event %d does not hash to its hash: %s", got.Seq, l)
		}
	}
}

// FuzzReadArchive: an archive file is outside input; reading it never
// panics, and what it accepts scans again to the same count.
func FuzzReadArchive(f *testing.F) {
	f.Add([]byte(`{"seq":1,"id":"evt_1","time":"2026-01-01T00:00:00Z","kind":"operation.decided","actor":"","identity":"","action":"","resource":"","decision":"","code":"","policy":"","rule":"","reason":"","request":{},"outcome":{},"v":1,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000"}` + "\n" +
		`{"v":1,"seq":1,"hash":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-01-01T00:00:00Z","key_id":"sign:audit.1","public_key":null,"sig":null}` + "\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"v":1,"seq":1}` + "\n" + `{"seq":2}` + "\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "audit-archive-fuzz.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := audit.ReadArchiveFile(path)
		if err != nil {
			return
		}
		var n int64
		if err := a.ScanEvents(func(*audit.Event) error { n++; return nil }); err != nil || n != a.Events {
			t.Fatalf("accepted archive scans to %d of %d events: %v", n, a.Events, err)
		}
	})
}
