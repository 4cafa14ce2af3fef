package audit_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"warden"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func wantUnavailable(t *testing.T, l *audit.Log) {
	t.Helper()
	_, err := l.Append(ctx, decided(0))
	if err == nil {
		t.Fatal("append succeeded while the database refuses writes")
	}
	if !warden.IsCode(err, warden.CodeUnavailable) || !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("want unavailable (fail closed), got %v (code %s)", err, warden.ErrorCode(err))
	}
}

// refuseInserts makes the database refuse audit inserts the way a full disk
// does; allowInserts undoes it.
func refuseInserts(t *testing.T, st *store.Store) {
	t.Helper()
	if st.Engine() == store.Postgres {
		sqlExec(t, st, `CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`)
		sqlExec(t, st, `CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`)
	} else {
		sqlExec(t, st, `CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`)
	}
}

func allowInserts(t *testing.T, st *store.Store) {
	t.Helper()
	if st.Engine() == store.Postgres {
		sqlExec(t, st, `DROP TRIGGER fail_audit ON audit_events`)
		sqlExec(t, st, `DROP FUNCTION fail_audit()`)
	} else {
		sqlExec(t, st, `DROP TRIGGER fail_audit`)
	}
}

// A write error (disk full, I/O error, refused insert) fails every waiting
// append with ErrUnavailable and leaves the chain as it was; once writes
// work again the chain continues without a gap.
func TestWriteFailureFailsClosedAndRecovers(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		e.appendN(t, 5)
		refuseInserts(t, st)
		for i := 0; i < 3; i++ {
			wantUnavailable(t, e.log)
		}
		if h, _ := st.AuditHead(ctx); h.Seq != 5 {
			t.Fatalf("head moved to %d during the failure", h.Seq)
		}
		allowInserts(t, st)
		if r := e.append(t, decided(1)); r.Seq != 6 {
			t.Fatalf("after recovery seq %d, want 6", r.Seq)
		}
		e.close(t)
		mustOK(t, e.verify(t))
	})
}

// PostgreSQL going away mid-run: appends fail closed, and succeed again
// when it is back.
func TestDatabaseOutageFailsClosedAndRecovers(t *testing.T) {
	dsn := wardentest.PostgresDSN(t)
	u, _ := url.Parse(dsn)
	proxy := wardentest.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr
	st, err := store.Open(ctx, store.Options{DSN: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := newEnv(t, st, func(o *audit.Options) { o.WriteTimeout = 3e9 })
	e.appendN(t, 3)
	proxy.Down()
	wantUnavailable(t, e.log)
	proxy.Up()
	var r audit.Receipt
	for i := 0; i < 20; i++ { // the pool drops its dead connections as it meets them
		if r, err = e.log.Append(ctx, decided(0)); err == nil {
			break
		}
	}
	if err != nil || r.Seq != 4 {
		t.Fatalf("after the outage: seq %d, %v", r.Seq, err)
	}
	e.close(t)
	mustOK(t, e.verify(t))
}

func TestClosedLogAndCancelledCallersFailClosed(t *testing.T) {
	e := newEnv(t, wardentest.SQLite(t))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.log.Append(cctx, decided(0)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("cancelled caller: %v", err)
	}
	e.close(t)
	wantUnavailable(t, e.log)
	if err := e.log.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// Hostile text in events and filters: no SQL injection (values are bound,
// patterns escaped), and an export line is always exactly one event.
func TestHostileTextInFieldsAndFilters(t *testing.T) {
	hostile := []string{
		`'; DROP TABLE audit_events; --`,
		`" OR 1=1 --`,
		"line1\nline2\r\n{\"seq\":1,\"kind\":\"forged\"}",
		"\x1b[31mred\x1b[0m \u2028 \u2029 tab\tend",
		"100% _under_ back\\slash [glob]? *star*",
		"nul\x00byte and bad utf8 \xff\xfe",
	}
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		for i, h := range hostile {
			ev := decided(i)
			ev.Reason, ev.Actor, ev.Request.UserAgent, ev.Request.Path = h, h, h, "/p/"+h
			ev.Identity = "nhi_" + string(rune('a'+i))
			ev.Action = []string{"a%b:x", "a_b:x", "aXb:x", "gh:issues.create", "gh:Issues.create", "[gh]:x"}[i]
			e.append(t, ev)
		}
		q := func(f audit.Filter) []audit.Event {
			t.Helper()
			evs, _, err := e.log.Query(ctx, f, "")
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			return evs
		}
		for _, inj := range []string{`' OR '1'='1`, `nhi_a' --`, `%`, `*`} {
			if n := len(q(audit.Filter{Identity: inj})); n != 0 {
				t.Fatalf("identity %q matched %d events", inj, n)
			}
		}
		for pattern, want := range map[string]int{"a%b:*": 1, "a_b:*": 1, "gh:*": 2, "gh:issues*": 1, "[gh]:*": 1, "*": 6, "a?b:*": 0} {
			if n := len(q(audit.Filter{Action: pattern})); n != want {
				t.Fatalf("action %q matched %d, want %d", pattern, n, want)
			}
		}
		for text, want := range map[string]int{"100%": 1, "%": 2 /* the reason and the action a%b:x */, "_UNDER_": 1, "back\\slash": 1, "DROP TABLE": 1, "no such text": 0} {
			if n := len(q(audit.Filter{Text: text})); n != want {
				t.Fatalf("text %q matched %d, want %d", text, n, want)
			}
		}
		if _, _, err := e.log.Query(ctx, audit.Filter{Text: "a\x00b"}, ""); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("NUL in a filter: %v", err)
		}
		for _, format := range []string{audit.FormatJSONL, audit.FormatOCSF} {
			var b strings.Builder
			n, err := e.log.Export(ctx, &b, format, audit.Filter{})
			if err != nil || n != int64(len(hostile)) {
				t.Fatalf("%s export: %d, %v", format, n, err)
			}
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if len(lines) != len(hostile) {
				t.Fatalf("%s export has %d lines for %d events: a field forged a line", format, len(lines), len(hostile))
			}
			for _, l := range lines {
				if strings.ContainsAny(l, "\r\x1b\u2028\u2029") {
					t.Fatalf("%s line carries a raw control character: %q", format, l)
				}
			}
		}
		mustOK(t, e.verify(t))
		evs := q(audit.Filter{Identity: "nhi_f"})
		if len(evs) != 1 || strings.ContainsRune(evs[0].Reason, 0) || !strings.Contains(evs[0].Reason, "\uFFFD") {
			t.Fatalf("NUL and invalid UTF-8 are not replaced: %q", evs[0].Reason)
		}
	})
}

// Enqueued events (completed records) are not answered with an error when a
// batch fails: the writer keeps them and commits them once writes work
// again, so a write outage loses none of them.
func TestEnqueuedEventsSurviveWriteFailure(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		e.appendN(t, 2)
		refuseInserts(t, st)
		for i := 0; i < 5; i++ {
			ev := decided(i)
			ev.Kind = audit.KindCompleted
			if err := e.log.Enqueue(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		wantUnavailable(t, e.log) // a waiting Append still fails closed
		if h, _ := st.AuditHead(ctx); h.Seq != 2 {
			t.Fatalf("head moved to %d during the failure", h.Seq)
		}
		allowInserts(t, st)
		r := e.append(t, decided(9))
		if r.Seq != 8 {
			t.Fatalf("after recovery the decided event got seq %d, want 8 (after the 5 enqueued)", r.Seq)
		}
		e.close(t)
		rep := e.verify(t)
		mustOK(t, rep)
		completed := 0
		if err := st.ScanAudit(ctx, 0, func(ev *audit.Event) error {
			if ev.Kind == audit.KindCompleted {
				completed++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if completed != 5 {
			t.Fatalf("%d enqueued events committed, want 5", completed)
		}
	})
}

// Close commits what was enqueued and not yet written.
func TestCloseCommitsEnqueuedEvents(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	for i := 0; i < 100; i++ {
		if err := e.log.Enqueue(ctx, decided(i)); err != nil {
			t.Fatal(err)
		}
	}
	e.close(t)
	if h, _ := st.AuditHead(ctx); h.Seq != 100 {
		t.Fatalf("head at %d after Close, want 100", h.Seq)
	}
	if err := e.log.Enqueue(ctx, decided(0)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("enqueue after Close: %v", err)
	}
}
