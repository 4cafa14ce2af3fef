package monitor_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/approval"
	"warden/internal/audit"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/monitor"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var root = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Roles: []string{warden.RoleAdmin}}

// clock is an injectable clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// recorder keeps the audit events the monitor appends.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Append(_ context.Context, e audit.Event) (audit.Receipt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return audit.Receipt{Seq: int64(len(r.events))}, nil
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Kind+"/"+e.Action+"/"+e.Decision)
	}
	return out
}

type fixture struct {
	st    *store.Store
	ids   *identity.Service
	mon   *monitor.Monitor
	clock *clock
	audit *recorder
	reg   *prometheus.Registry
	agent *identity.Identity
	stop  func()
}

func newFixture(t *testing.T, st *store.Store, mutate func(*monitor.Options)) *fixture {
	t.Helper()
	if st == nil {
		st = wardentest.SQLite(t)
	}
	f := &fixture{st: st, clock: &clock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}, audit: &recorder{}, reg: prometheus.NewRegistry()}
	f.ids = identity.New(identity.Options{Store: st})
	a, err := f.ids.Resolve(ctx, "mailer")
	if err != nil {
		a, err = f.ids.Create(ctx, root, identity.CreateInput{Name: "mailer", Type: identity.TypeAIAgent, Owner: "alice@example.com", Labels: map[string]string{"team": "mail"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	f.agent = a
	o := monitor.Options{Store: st, Identities: f.ids, Audit: f.audit, Registry: f.reg, Now: f.clock.Now,
		Tuning: monitor.Tuning{LearningCalls: 20, SpikeFloor: 20}, SnapshotEvery: time.Hour}
	if mutate != nil {
		mutate(&o)
	}
	f.mon, err = monitor.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.mon.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.mon.Run(runCtx); close(done) }()
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) call(action, class, decision string) {
	f.mon.Observe(gate.Observation{Time: f.clock.Now(), IdentityID: f.agent.ID, KeyID: "key_1", Action: action, Class: class,
		Decision: decision, Code: map[string]string{"allow": "allowed", "deny": "denied"}[decision], ClientIP: "198.51.100.7", UserAgent: "agent/1.0"})
}

// learn plays 20 ordinary calls a minute apart.
func (f *fixture) learn() {
	for range 20 {
		f.call("mail:messages.list", "read", "allow")
		f.clock.Add(time.Minute)
	}
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.mon.Sync(c); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) findings(t *testing.T, flt monitor.Filter) []*monitor.Finding {
	t.Helper()
	fs, _, err := f.mon.List(ctx, root, flt)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestObserveNeverBlocksWhenFull(t *testing.T) {
	st := wardentest.SQLite(t)
	reg := prometheus.NewRegistry()
	mon, err := monitor.New(monitor.Options{Store: st, Registry: reg, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody drains the queue: Observe must still return every time.
	o := gate.Observation{Time: time.Now(), IdentityID: "nhi_x", Action: "mail:messages.send", Decision: "allow"}
	for range 10_000 {
		mon.Observe(o)
	}
	// Without a registry the breaker refuses clearly instead of panicking.
	if _, _, err := mon.Trip(ctx, root, "x", "why"); !warden.IsCode(err, warden.CodeUnavailable) {
		t.Fatalf("trip without registry: %v", err)
	}
	if _, err := mon.Pause(ctx, root, monitor.Selector{Owner: "a@example.com"}, "why"); !warden.IsCode(err, warden.CodeUnavailable) {
		t.Fatalf("pause without registry: %v", err)
	}
	if mon.Dropped() != 10_000-8 {
		t.Fatalf("dropped %d", mon.Dropped())
	}
	if v := metric(t, reg, "warden_monitor_observations_dropped_total"); v != 10_000-8 {
		t.Fatalf("metric %v", v)
	}
	// Once it runs, it says so: a queue_overflow finding names the count.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { mon.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := mon.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	fs, _, err := st.ListFindings(ctx, monitor.Filter{Detector: monitor.DetQueueOverflow, Limit: 10})
	if err != nil || len(fs) != 1 || fs[0].Severity != monitor.High || !strings.Contains(fs[0].Explanation, "dropped 9992 observations") {
		t.Fatalf("overflow finding: %v %v", fs, err)
	}
}

func TestBreakerSuspendsOnSpike(t *testing.T) {
	f := newFixture(t, nil, func(o *monitor.Options) {
		o.Responses = map[monitor.Severity]monitor.Response{monitor.High: monitor.RespondSuspend}
	})
	f.learn()
	f.sync(t)
	if fs := f.findings(t, monitor.Filter{}); len(fs) != 0 {
		t.Fatalf("findings while learning: %v", fs[0].Explanation)
	}
	for range 25 {
		f.call("mail:messages.send", "write", "allow")
		f.clock.Add(100 * time.Millisecond)
	}
	f.sync(t)
	fs := f.findings(t, monitor.Filter{IdentityID: f.agent.ID})
	var spike *monitor.Finding
	for _, x := range fs {
		if x.Detector == monitor.DetRateSpike {
			spike = x
		}
	}
	if spike == nil || spike.Severity != monitor.High || spike.ActionTaken != "suspend" || spike.ContainedAt == nil || spike.Status != monitor.StatusOpen {
		t.Fatalf("spike finding: %+v (all %d)", spike, len(fs))
	}
	id, _ := f.ids.Lookup(ctx, f.agent.ID)
	if id.Status != identity.StatusSuspended || !strings.Contains(id.StatusReason, spike.ID) || id.StatusActor != "admin:monitor" {
		t.Fatalf("identity: %s %q by %s", id.Status, id.StatusReason, id.StatusActor)
	}
	if k := f.audit.kinds(); !contains(k, audit.KindFinding+"/mail:messages.send/suspend") {
		t.Fatalf("audit: %v", k)
	}
	if metric(t, f.reg, "warden_monitor_time_to_contain_seconds") < 1 || metric(t, f.reg, "warden_monitor_time_to_detect_seconds") < 1 {
		t.Fatal("time to detect / contain not recorded")
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestThrottle(t *testing.T) {
	f := newFixture(t, nil, func(o *monitor.Options) {
		o.Throttle = monitor.ThrottleOptions{Rate: 2, Burst: 3, For: 10 * time.Minute}
	})
	if _, _, ok := f.mon.Throttled(f.agent.ID, f.clock.Now()); ok {
		t.Fatal("throttled before any finding")
	}
	f.learn()
	for range 25 { // high by default: throttle
		f.call("mail:messages.send", "write", "allow")
	}
	f.sync(t)
	fs := f.findings(t, monitor.Filter{Detector: monitor.DetRateSpike})
	if len(fs) != 1 || fs[0].ActionTaken != "throttle" {
		t.Fatalf("%v", fs)
	}
	now := f.clock.Now()
	wait, reason, ok := f.mon.Throttled(f.agent.ID, now)
	if !ok || wait != 500*time.Millisecond || !strings.Contains(reason, fs[0].ID) {
		t.Fatalf("empty bucket: %v %q %v", wait, reason, ok)
	}
	// Tokens refill at 2/s up to the burst of 3.
	now = now.Add(10 * time.Second)
	for i := range 3 {
		if _, _, ok := f.mon.Throttled(f.agent.ID, now); ok {
			t.Fatalf("token %d refused", i)
		}
	}
	if _, _, ok := f.mon.Throttled(f.agent.ID, now); !ok {
		t.Fatal("burst exceeded but allowed")
	}
	if _, _, ok := f.mon.Throttled("nhi_other", now); ok {
		t.Fatal("another identity throttled")
	}
	if len(f.mon.Throttles()) != 1 {
		t.Fatal("throttle not listed")
	}
	// The throttle ends on its own.
	if _, _, ok := f.mon.Throttled(f.agent.ID, now.Add(11*time.Minute)); ok {
		t.Fatal("throttle outlived its duration")
	}
	if v := metric(t, f.reg, "warden_monitor_throttled_identities"); v != 0 {
		t.Fatalf("gauge %v", v)
	}
}

func TestBaselinesSurviveRestart(t *testing.T) {
	st := wardentest.SQLite(t)
	f := newFixture(t, st, nil)
	f.learn()
	f.sync(t) // saves the baselines
	f.stop()
	// A fresh monitor on the same store knows the agent: a new operation is
	// a finding at once, no second learning period.
	g := newFixture(t, st, nil)
	g.clock.t = f.clock.Now()
	g.call("mail:admin.forwarding", "admin", "allow")
	g.sync(t)
	fs := g.findings(t, monitor.Filter{Detector: monitor.DetNewOperation})
	if len(fs) != 1 || fs[0].Severity != monitor.High {
		t.Fatalf("after restart: %v", fs)
	}
	// Control: without the saved baselines the same call is just learning.
	h := newFixture(t, nil, nil)
	h.call("mail:admin.forwarding", "admin", "allow")
	h.sync(t)
	if fs := h.findings(t, monitor.Filter{}); len(fs) != 0 {
		t.Fatalf("fresh monitor raised %v", fs[0].Explanation)
	}
}

func TestWebhookSignedWithRetry(t *testing.T) {
	secret := warden.NewSecret("hook-secret-0123456789")
	var (
		mu     sync.Mutex
		bodies [][]byte
		tries  atomic.Int32
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if tries.Add(1) == 1 {
			w.WriteHeader(503) // the first attempt fails: the alert is retried
			return
		}
		if r.Header.Get("X-Warden-Signature") != approval.Sign(secret, r.Header.Get("X-Warden-Timestamp"), b) {
			w.WriteHeader(401)
			t.Errorf("bad signature")
			return
		}
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer hook.Close()
	f := newFixture(t, nil, func(o *monitor.Options) {
		o.Webhook = monitor.WebhookOptions{URL: hook.URL, Secret: secret, Backoff: time.Millisecond, PublicURL: "https://warden.example"}
	})
	f.learn()
	f.call("mail:messages.delete", "delete", "allow")
	f.call("mail:messages.delete", "delete", "allow") // not new any more: one alert
	f.sync(t)
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || tries.Load() != 2 {
		t.Fatalf("%d alerts after %d tries", len(bodies), tries.Load())
	}
	var a monitor.Alert
	if err := json.Unmarshal(bodies[0], &a); err != nil {
		t.Fatal(err)
	}
	if a.Warden["detector"] != "new_operation" || a.Warden["severity"] != "high" || !strings.Contains(a.Text, "mail:messages.delete") ||
		!strings.HasPrefix(a.Warden["url"].(string), "https://warden.example/v1/findings/fnd_") || len(a.Blocks) == 0 {
		t.Fatalf("alert: %s", bodies[0])
	}
}

func TestFindingLifecycleAndPermissions(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.learn()
	f.call("mail:drafts.create", "write", "allow")
	f.sync(t)
	fs := f.findings(t, monitor.Filter{Status: monitor.StatusOpen})
	if len(fs) != 1 {
		t.Fatalf("%d open", len(fs))
	}
	id := fs[0].ID
	alice := warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_a", Subject: "alice@example.com", Roles: []string{warden.RoleOwner}}
	bob := warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_b", Subject: "bob@example.com", Roles: []string{warden.RoleOwner}}
	auditor := warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_c", Subject: "carol", Roles: []string{warden.RoleAuditor}}
	if got, _, _ := f.mon.List(ctx, bob, monitor.Filter{}); len(got) != 0 {
		t.Fatal("bob sees alice's findings")
	}
	if _, err := f.mon.Get(ctx, bob, id); !warden.IsCode(err, warden.CodeNotFound) {
		t.Fatalf("bob get: %v", err)
	}
	if got, _, _ := f.mon.List(ctx, auditor, monitor.Filter{}); len(got) != 1 {
		t.Fatal("auditor does not see it")
	}
	if _, err := f.mon.Acknowledge(ctx, auditor, id, ""); !warden.IsCode(err, warden.CodeForbidden) {
		t.Fatalf("auditor ack: %v", err)
	}
	x, err := f.mon.Acknowledge(ctx, alice, id, "looking")
	if err != nil || x.Status != monitor.StatusAcknowledged || x.AckedBy != alice.Actor() || x.Note != "looking" {
		t.Fatalf("ack: %+v %v", x, err)
	}
	if _, err := f.mon.Acknowledge(ctx, alice, id, ""); !warden.IsCode(err, warden.CodeConflict) {
		t.Fatalf("second ack: %v", err)
	}
	if x, err = f.mon.Resolve(ctx, root, id, "expected: new drafts feature"); err != nil || x.Status != monitor.StatusResolved {
		t.Fatalf("resolve: %v", err)
	}
	if _, err := f.mon.Resolve(ctx, root, id, ""); !warden.IsCode(err, warden.CodeConflict) {
		t.Fatalf("second resolve: %v", err)
	}
	if _, err := f.mon.Resolve(ctx, root, id, "bad\x00note"); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("bad note: %v", err)
	}
	for _, bad := range []monitor.Filter{{Limit: 5000}, {Status: "closed"}, {Detector: "nope"}, {Severity: []monitor.Severity{"urgent"}}} {
		if _, _, err := f.mon.List(ctx, root, bad); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	if k := f.audit.kinds(); !contains(k, audit.KindLifecycle+"/finding.acknowledge/applied") || !contains(k, audit.KindLifecycle+"/finding.resolve/applied") {
		t.Fatalf("audit: %v", k)
	}
}

func TestTripPauseAndResume(t *testing.T) {
	f := newFixture(t, nil, nil)
	mk := func(name, owner, team string) *identity.Identity {
		x, err := f.ids.Create(ctx, root, identity.CreateInput{Name: name, Type: identity.TypeAIAgent, Owner: owner, Labels: map[string]string{"team": team}})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	a1, a2, b1 := mk("a1", "alice@example.com", "mail"), mk("a2", "alice@example.com", "crm"), mk("b1", "bob@example.com", "mail")
	// A human trips one identity.
	if _, _, err := f.mon.Trip(ctx, root, a1.Name, ""); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("no reason: %v", err)
	}
	id, fnd, err := f.mon.Trip(ctx, root, a1.Name, "leaking customer data")
	if err != nil || id.Status != identity.StatusSuspended || fnd.Detector != monitor.DetManualTrip {
		t.Fatalf("trip: %v", err)
	}
	if got, _ := f.mon.Get(ctx, root, fnd.ID); got == nil || got.ActionTaken != "suspend" {
		t.Fatal("trip finding not stored")
	}
	// Pause every identity of alice: mailer and a2 (a1 is already suspended).
	if _, err := f.mon.Pause(ctx, root, monitor.Selector{}, "incident"); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("empty selector: %v", err)
	}
	owner := warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_a", Subject: "alice@example.com", Roles: []string{warden.RoleOwner}}
	if _, err := f.mon.Pause(ctx, owner, monitor.Selector{Owner: "alice@example.com"}, "incident"); !warden.IsCode(err, warden.CodeForbidden) {
		t.Fatalf("owner pause: %v", err)
	}
	res, err := f.mon.Pause(ctx, root, monitor.Selector{Owner: "alice@example.com"}, "incident 42")
	if err != nil || len(res.Changed) != 2 {
		t.Fatalf("pause: %+v %v", res, err)
	}
	for _, ref := range []string{"mailer", "a2"} {
		if x, _ := f.ids.Lookup(ctx, ref); x.Status != identity.StatusSuspended || !strings.HasPrefix(x.StatusReason, monitor.PausePrefix) {
			t.Fatalf("%s: %s %q", ref, x.Status, x.StatusReason)
		}
	}
	if x, _ := f.ids.Lookup(ctx, b1.ID); x.Status != identity.StatusActive {
		t.Fatal("bob's identity paused")
	}
	// By label.
	res, err = f.mon.Pause(ctx, root, monitor.Selector{Labels: map[string]string{"team": "mail"}}, "mail incident")
	if err != nil || len(res.Changed) != 1 || res.Changed[0].ID != b1.ID {
		t.Fatalf("label pause: %+v %v", res, err)
	}
	// Resume lifts the pauses, never the trip.
	res, err = f.mon.Unpause(ctx, root, monitor.Selector{Owner: "alice@example.com"}, "over")
	if err != nil || len(res.Changed) != 2 || res.Skipped[a1.ID] == "" {
		t.Fatalf("resume: %+v %v", res, err)
	}
	if x, _ := f.ids.Lookup(ctx, a1.ID); x.Status != identity.StatusSuspended {
		t.Fatal("resume lifted the trip")
	}
	if x, _ := f.ids.Lookup(ctx, a2.ID); x.Status != identity.StatusActive {
		t.Fatal("a2 not resumed")
	}
	k := f.audit.kinds()
	for _, want := range []string{"lifecycle/breaker.trip/applied", "lifecycle/breaker.pause/applied", "lifecycle/breaker.resume/applied"} {
		if !contains(k, want) {
			t.Fatalf("audit lacks %s: %v", want, k)
		}
	}
}

func TestOptionsValidated(t *testing.T) {
	st := wardentest.SQLite(t)
	for _, o := range []monitor.Options{
		{Store: st, Responses: map[monitor.Severity]monitor.Response{"urgent": monitor.RespondAlert}},
		{Store: st, Responses: map[monitor.Severity]monitor.Response{monitor.High: "explode"}},
		{Store: st, Throttle: monitor.ThrottleOptions{Rate: -1}},
		{Store: st, QueueSize: -1},
		{Store: st, Webhook: monitor.WebhookOptions{URL: "ftp://x"}},
		{Store: st, Tuning: monitor.Tuning{LearningCalls: -5}},
		{},
	} {
		if _, err := monitor.New(o); err == nil {
			t.Fatalf("accepted %+v", o)
		}
	}
}
