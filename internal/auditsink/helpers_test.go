package auditsink_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/audit"
	"warden/internal/auditsink"
	"warden/internal/seal"
	"warden/internal/store"
	"warden/internal/webhook"
)

var ctx = context.Background()

// env is a real audit log on a real store, the chain a sink reads.
type env struct {
	st  *store.Store
	log *audit.Log
}

func newEnv(t testing.TB, st *store.Store) *env {
	t.Helper()
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := seal.Open(ctx, master, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	l, err := audit.Open(ctx, audit.Options{Store: st, Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(ctx) })
	return &env{st: st, log: l}
}

// appendN appends n events concurrently (group commit keeps it quick) and
// returns the head.
func (e *env) appendN(t testing.TB, n int, mk func(i int) audit.Event) int64 {
	t.Helper()
	if mk == nil {
		mk = decided
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := e.log.Append(ctx, mk(i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	h, err := e.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

func decided(i int) audit.Event {
	return audit.Event{Kind: audit.KindDecided, Actor: "identity:nhi_agent", Identity: "nhi_agent",
		Action: "github:issues.create", Resource: "repo=acme/web", Decision: "allow", Code: "allowed",
		Policy: "p", Rule: "r", Reason: "call " + strconv.Itoa(i)}
}

// running sinks, stopped by stop (and at test end).
type running struct {
	sinks *auditsink.Sinks
	reg   *prometheus.Registry
	stop  func()
}

func start(t testing.TB, st auditsink.Store, cfgs ...auditsink.Config) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := auditsink.New(auditsink.Options{Store: st, Sinks: cfgs, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(c); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("sinks did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return &running{sinks: s, reg: reg, stop: stop}
}

// metric returns the value of a sink's counter or gauge.
func (r *running) metric(t testing.TB, name, sink string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return -1
}

// waitFor polls cond until it holds; it fails the test after 60s (a
// deadline for a hang, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receiver is a webhook receiver: it checks what arrives (content type,
// signature, one event per line) and records the events of every request
// it accepted. fail, when set, decides per request (numbered from 1)
// whether to refuse it and how.
type receiver struct {
	t      testing.TB
	secret string
	auth   string // the Authorization header expected, when set
	srv    *httptest.Server

	mu       sync.Mutex
	requests int
	firsts   []int64 // X-Warden-First-Seq of accepted requests
	events   []audit.Event
	raw      [][]byte
	problems []string
	fail     func(n int, w http.ResponseWriter) bool
}

func newReceiver(t testing.TB, secret string) *receiver {
	r := &receiver{t: t, secret: secret}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body := new(bytes.Buffer)
	if _, err := body.ReadFrom(req.Body); err != nil {
		return
	}
	r.mu.Lock()
	r.requests++
	n, fail := r.requests, r.fail
	r.mu.Unlock()
	if fail != nil && fail(n, w) {
		return
	}
	var problems []string
	if ct := req.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		problems = append(problems, "content type "+ct)
	}
	if r.secret != "" {
		want := webhook.Sign(warden.NewSecret(r.secret), req.Header.Get("X-Warden-Timestamp"), body.Bytes())
		if req.Header.Get("X-Warden-Signature") != want {
			problems = append(problems, "bad signature")
		}
	}
	if r.auth != "" && req.Header.Get("Authorization") != r.auth {
		problems = append(problems, "missing or wrong Authorization")
	}
	var evs []audit.Event
	var raw [][]byte
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			problems = append(problems, fmt.Sprintf("line is not one event: %v: %q", err, sc.Text()))
			continue
		}
		evs = append(evs, e)
		raw = append(raw, bytes.Clone(sc.Bytes()))
	}
	first, _ := strconv.ParseInt(req.Header.Get("X-Warden-First-Seq"), 10, 64)
	if len(evs) > 0 && (first != evs[0].Seq || req.Header.Get("X-Warden-Last-Seq") != strconv.FormatInt(evs[len(evs)-1].Seq, 10)) {
		problems = append(problems, "seq headers do not match the body")
	}
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.raw = append(r.raw, raw...)
	r.firsts = append(r.firsts, first)
	r.problems = append(r.problems, problems...)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) snapshot() (evs []audit.Event, firsts []int64, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...), append([]int64(nil), r.firsts...), append([]string(nil), r.problems...)
}

// seqs lists the received events' seqs.
func (r *receiver) seqs() []int64 {
	evs, _, _ := r.snapshot()
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// has reports whether every seq 1..head arrived.
func (r *receiver) has(head int64) bool {
	got := map[int64]bool{}
	for _, s := range r.seqs() {
		got[s] = true
	}
	for s := int64(1); s <= head; s++ {
		if !got[s] {
			return false
		}
	}
	return true
}

// checkChain asserts that the received events are exactly 1..head in order
// and link up by prev_hash (what a SIEM can check).
func checkChain(t testing.TB, evs []audit.Event, head int64) {
	t.Helper()
	if int64(len(evs)) != head {
		t.Fatalf("received %d events, want exactly %d (1..%d once each)", len(evs), head, head)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: not in seq order", i, e.Seq)
		}
		if i > 0 && e.PrevHash != evs[i-1].Hash {
			t.Fatalf("seq %d: prev_hash does not match the previous event's hash", e.Seq)
		}
		if h, _, _ := audit.ComputeHash(nil, &e); h != e.Hash {
			t.Fatalf("seq %d: the delivered event does not hash to its hash", e.Seq)
		}
	}
}

func webhookSink(name, url string) auditsink.Config {
	return auditsink.Config{Name: name, Type: auditsink.TypeWebhook, URL: url,
		PollInterval: 10 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 5 * time.Second}
}

func secret(s string) warden.Secret { return warden.NewSecret(s) }
