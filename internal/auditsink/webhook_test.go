package auditsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warden/internal/audit"
	"warden/internal/auditsink"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// A receiver that refuses, hangs and redirects before it accepts gets every
// event exactly once, in seq order, signed; the cursor is stored.
func TestWebhookRetriesUntilDelivered(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		var elsewhere atomic.Int64
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
		defer other.Close()

		rec := newReceiver(t, "s3cret-for-tests")
		rec.auth = "Splunk hec-token-for-tests"
		rec.fail = func(n int, w http.ResponseWriter) bool {
			switch n {
			case 1:
				w.WriteHeader(http.StatusServiceUnavailable)
			case 2:
				time.Sleep(700 * time.Millisecond) // past the sink's timeout
				w.WriteHeader(http.StatusNoContent)
			case 3:
				http.Redirect(w, &http.Request{}, other.URL+"/steal", http.StatusTemporaryRedirect)
			case 4:
				w.WriteHeader(http.StatusBadRequest)
			default:
				return false
			}
			return true
		}
		head := e.appendN(t, 100, nil)
		cfg := webhookSink("siem", rec.srv.URL+"/ingest?token=do-not-log")
		cfg.Secret = secret("s3cret-for-tests")
		cfg.Authorization = secret("Splunk hec-token-for-tests")
		cfg.BatchSize = 40
		cfg.Timeout = 300 * time.Millisecond
		r := start(t, st, cfg)
		// More events while the sink is failing and catching up.
		head = e.appendN(t, 50, nil)
		waitFor(t, "every event delivered", func() bool { return rec.has(head) })
		waitFor(t, "the cursor stored", func() bool { c, _ := st.AuditSinkCursor(ctx, "siem"); return c == head })
		r.stop()

		evs, _, problems := rec.snapshot()
		if len(problems) > 0 {
			t.Fatalf("receiver saw: %v", problems)
		}
		checkChain(t, evs, head)
		if elsewhere.Load() != 0 {
			t.Fatal("the sink followed a redirect to another host")
		}
		if f := r.metric(t, "warden_audit_sink_failures_total", "siem"); f < 4 {
			t.Fatalf("failures_total = %v, want >= 4", f)
		}
		if d := r.metric(t, "warden_audit_sink_delivered_total", "siem"); d != float64(head) {
			t.Fatalf("delivered_total = %v, want %d", d, head)
		}
		if l := r.metric(t, "warden_audit_sink_lag_events", "siem"); l != 0 {
			t.Fatalf("lag = %v after catching up", l)
		}
		st0 := r.sinks.Status()[0]
		if st0.Cursor != head || st0.Delivered != head || st0.LastError == "" {
			t.Fatalf("status %+v", st0)
		}
		if strings.Contains(st0.LastError, "do-not-log") || strings.Contains(st0.LastError, "s3cret") || strings.Contains(st0.LastError, "hec-token") {
			t.Fatalf("an error names the URL's token or the secret: %q", st0.LastError)
		}
		if mc, err := r.sinks.MinCursor(ctx); err != nil || mc != head {
			t.Fatalf("MinCursor = %d, %v; want %d", mc, err, head)
		}
	})
}

// A sink stopped (Warden down) resumes after its cursor: nothing is sent
// twice, nothing written meanwhile is missed.
func TestWebhookResumesAfterRestart(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		rec := newReceiver(t, "")
		head := e.appendN(t, 30, nil)
		r := start(t, st, webhookSink("siem", rec.srv.URL))
		waitFor(t, "first 30 delivered", func() bool { return rec.has(head) })
		waitFor(t, "cursor at 30", func() bool { c, _ := st.AuditSinkCursor(ctx, "siem"); return c == head })
		r.stop()

		head = e.appendN(t, 30, nil) // written while no sink runs
		_, before, _ := rec.snapshot()
		start(t, st, webhookSink("siem", rec.srv.URL))
		waitFor(t, "all 60 delivered", func() bool { return rec.has(head) })
		evs, firsts, _ := rec.snapshot()
		checkChain(t, evs, head)
		if got := firsts[len(before)]; got != 31 {
			t.Fatalf("the restarted sink began at seq %d, want 31", got)
		}
	})
}

// Two replicas running the same sink on one database: one delivers at a
// time (lease), the cursor is shared, nothing is lost or sent twice.
func TestWebhookReplicasShareTheCursor(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		rec := newReceiver(t, "")
		cfg := webhookSink("siem", rec.srv.URL)
		cfg.BatchSize = 25
		a := start(t, st, cfg)
		b := start(t, st, cfg)
		head := e.appendN(t, 120, nil)
		waitFor(t, "every event delivered", func() bool { return rec.has(head) })
		// The receiver has the last batch before the owner records it:
		// wait for the cursor, or stopping the owner now could (rightly,
		// at least once) make the other replica send that batch again.
		waitFor(t, "the cursor at the head", func() bool { c, _ := st.AuditSinkCursor(ctx, "siem"); return c == head })
		evs, _, _ := rec.snapshot()
		checkChain(t, evs, head)
		active := 0
		for _, r := range []*running{a, b} {
			if r.sinks.Status()[0].Active {
				active++
			}
		}
		if active != 1 {
			t.Fatalf("%d replicas hold the lease, want 1", active)
		}
		// The owner stops; the other takes over at once (released lease).
		owner, other := a, b
		if !a.sinks.Status()[0].Active {
			owner, other = b, a
		}
		owner.stop()
		head = e.appendN(t, 20, nil)
		waitFor(t, "the other replica delivers", func() bool { return rec.has(head) })
		evs, _, _ = rec.snapshot()
		checkChain(t, evs, head)
		if !other.sinks.Status()[0].Active {
			t.Fatal("the remaining replica does not hold the lease")
		}
	})
}

// Shutdown while a POST is in flight lets that POST finish and records its
// cursor, so a restart (or another replica) does not send the batch again.
func TestWebhookShutdownFinishesTheBatch(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		rec := newReceiver(t, "")
		inFlight := make(chan struct{})
		release := make(chan struct{})
		var released sync.Once
		unblock := func() { released.Do(func() { close(release) }) }
		t.Cleanup(unblock) // before the receiver closes, should the test fail
		rec.fail = func(n int, w http.ResponseWriter) bool {
			if n == 1 {
				close(inFlight)
				<-release // the receiver has the batch; its answer is slow
			}
			return false
		}
		head := e.appendN(t, 30, nil)
		r := start(t, st, webhookSink("siem", rec.srv.URL))
		<-inFlight
		stopped := make(chan struct{})
		go func() { r.stop(); close(stopped) }()
		time.Sleep(100 * time.Millisecond) // shutdown is under way
		select {
		case <-stopped:
			t.Fatal("shutdown did not wait for the batch in flight")
		default:
		}
		unblock()
		<-stopped
		if c, err := st.AuditSinkCursor(ctx, "siem"); err != nil || c != head {
			t.Fatalf("cursor after shutdown = %d, %v; want %d (the batch the receiver took)", c, err, head)
		}
		// A restart sends nothing again.
		more := e.appendN(t, 5, nil)
		start(t, st, webhookSink("siem", rec.srv.URL))
		waitFor(t, "the new events delivered", func() bool { return rec.has(more) })
		waitFor(t, "the cursor at the head", func() bool { c, _ := st.AuditSinkCursor(ctx, "siem"); return c == more })
		evs, _, _ := rec.snapshot()
		checkChain(t, evs, more)
	})
}

// A receiver that hangs holds shutdown back for one delivery timeout, no
// longer; the batch is not recorded and goes again later.
func TestWebhookShutdownBoundedByTimeout(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	rec := newReceiver(t, "")
	inFlight := make(chan struct{})
	var once sync.Once
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) }) // runs before the receiver closes
	rec.fail = func(n int, w http.ResponseWriter) bool {
		once.Do(func() { close(inFlight) })
		<-unblock
		return true
	}
	e.appendN(t, 10, nil)
	cfg := webhookSink("siem", rec.srv.URL)
	cfg.Timeout = time.Second
	r := start(t, st, cfg)
	<-inFlight
	t0 := time.Now()
	r.stop()
	if d := time.Since(t0); d > cfg.Timeout+2*time.Second {
		t.Fatalf("shutdown took %v with a hanging receiver; want about the %v delivery timeout at most", d, cfg.Timeout)
	}
	if c, err := st.AuditSinkCursor(ctx, "siem"); err != nil || c != 0 {
		t.Fatalf("cursor = %d, %v; want 0 (nothing acknowledged)", c, err)
	}
}

// Kinds select what is delivered; the cursor still passes the others, and
// OCSF is the export's mapping.
func TestWebhookKindsAndOCSF(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	var (
		mu  sync.Mutex
		got []map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		for dec.More() {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	head := e.appendN(t, 30, func(i int) audit.Event {
		ev := decided(i)
		if i%3 == 0 {
			ev.Kind, ev.Decision = audit.KindFinding, "deny"
		}
		return ev
	})
	cfg := webhookSink("findings", srv.URL)
	cfg.Kinds = []string{audit.KindFinding}
	cfg.Format = audit.FormatOCSF
	start(t, st, cfg)
	waitFor(t, "the cursor passes every event", func() bool { c, _ := st.AuditSinkCursor(ctx, "findings"); return c == head })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 10 {
		t.Fatalf("delivered %d events, want the 10 findings", len(got))
	}
	for _, m := range got {
		w := m["unmapped"].(map[string]any)["warden"].(map[string]any)
		if w["kind"] != audit.KindFinding || m["class_uid"] != float64(6003) || m["metadata"].(map[string]any)["sequence"] == nil {
			t.Fatalf("not an OCSF finding: %v", m)
		}
	}
}

// MinCursor is the slowest configured sink's cursor: a sink whose receiver
// is down holds back every event.
func TestMinCursor(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	ok := newReceiver(t, "")
	down := newReceiver(t, "")
	down.fail = func(_ int, w http.ResponseWriter) bool { w.WriteHeader(http.StatusBadGateway); return true }
	head := e.appendN(t, 20, nil)
	none, err := auditsink.New(auditsink.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if mc, err := none.MinCursor(ctx); err != nil || mc != head {
		t.Fatalf("MinCursor without sinks or cursors = %d, %v; want the head %d", mc, err, head)
	}
	r := start(t, st, webhookSink("fast", ok.srv.URL), webhookSink("broken", down.srv.URL))
	waitFor(t, "fast delivered", func() bool { return ok.has(head) })
	waitFor(t, "broken failed", func() bool { return r.metric(t, "warden_audit_sink_failures_total", "broken") >= 2 })
	if mc, err := r.sinks.MinCursor(ctx); err != nil || mc != 0 {
		t.Fatalf("MinCursor = %d, %v; want 0 while a sink delivered nothing", mc, err)
	}
	waitFor(t, "lag of the broken sink", func() bool { return r.metric(t, "warden_audit_sink_lag_events", "broken") == float64(head) })
	// A replica that does not run the broken sink is held back by it too.
	if mc, err := none.MinCursor(ctx); err != nil || mc != 0 {
		t.Fatalf("MinCursor of a replica without sinks = %d, %v; want 0 (the broken sink's cursor)", mc, err)
	}
}

// MinCursor counts every cursor row: a sink configured only on another
// replica, or retired from the configuration, holds retention back until
// its row is deleted, and the replica logs which sink it is.
func TestMinCursorCountsEveryCursor(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		rec := newReceiver(t, "")
		head := e.appendN(t, 20, nil)
		// "retired" delivered up to 7 once, and is configured nowhere now.
		if _, err := st.AuditSinkCursor(ctx, "retired"); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.AdvanceAuditSinkCursor(ctx, "retired", 0, 7); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
		var logs syncBuffer
		s, err := auditsink.New(auditsink.Options{Store: st, Sinks: []auditsink.Config{webhookSink("siem", rec.srv.URL)},
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { s.Run(c); close(done) }()
		defer func() { cancel(); <-done }()
		waitFor(t, "siem's cursor at the head", func() bool { c, _ := st.AuditSinkCursor(ctx, "siem"); return c == head })
		if mc, err := s.MinCursor(ctx); err != nil || mc != 7 {
			t.Fatalf("MinCursor = %d, %v; want 7 (the retired sink's cursor)", mc, err)
		}
		if l := logs.String(); !strings.Contains(l, "sink=retired") || !strings.Contains(l, "DELETE FROM audit_sink_cursors WHERE name = 'retired'") {
			t.Fatalf("the log does not name the sink holding retention back: %s", l)
		}
		if _, err := st.DB().ExecContext(ctx, `DELETE FROM audit_sink_cursors WHERE name = 'retired'`); err != nil {
			t.Fatal(err)
		}
		if mc, err := s.MinCursor(ctx); err != nil || mc != head {
			t.Fatalf("MinCursor after deleting the retired cursor = %d, %v; want the head %d", mc, err, head)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  auditsink.Config
		want string
	}{
		{auditsink.Config{Name: "Bad_Name", Type: "webhook", URL: "https://x"}, "name"},
		{auditsink.Config{Name: "a", Type: "kafka"}, "type"},
		{auditsink.Config{Name: "a", Type: "webhook", URL: "ftp://x/y"}, "url"},
		{auditsink.Config{Name: "a", Type: "webhook", URL: "https://x", Format: "cef"}, "format"},
		{auditsink.Config{Name: "a", Type: "syslog", Network: "sctp", Address: "x:514"}, "network"},
		{auditsink.Config{Name: "a", Type: "syslog", Network: "tcp", Address: "x"}, "address"},
		{auditsink.Config{Name: "a", Type: "syslog", Network: "tls", Address: ":6514"}, "address"},
		{auditsink.Config{Name: "a", Type: "syslog", Network: "udp", Address: "x:"}, "address"},
		{auditsink.Config{Name: "a", Type: "webhook", URL: "https://x", Kinds: []string{"operation.decide"}}, "operation.decide"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	st := wardentest.SQLite(t)
	_, err := auditsink.New(auditsink.Options{Store: st, Sinks: []auditsink.Config{webhookSink("a", "http://x"), webhookSink("a", "http://y")}})
	if err == nil {
		t.Fatal("two sinks with one name were accepted")
	}
}

// The sink accepts every kind Warden writes.
func TestSinkAcceptsEveryKind(t *testing.T) {
	c := webhookSink("a", "https://x")
	c.Kinds = audit.Kinds()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
