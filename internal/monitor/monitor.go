// Package monitor watches what every identity does, learns what is normal
// for it, and acts when it stops being normal: it raises findings a person
// can read, throttles or suspends the identity per the finding's severity
// (the circuit breaker), keeps every finding and action in the audit trail
// and sends alerts to a webhook.
//
// The gate calls Observe for every decided and completed call. Observe only
// copies the observation into a bounded queue and never blocks: when the
// queue is full the observation is dropped and counted, and the detector
// raises a queue_overflow finding that says so. One goroutine owns every
// baseline and runs the detectors; another takes the breaker's actions and
// stores findings; a third persists baselines so a restart does not
// re-learn from zero. docs/monitor.md describes the detectors and knobs.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/audit"
	"warden/internal/gate"
	"warden/internal/identity"
)

// Response is what the breaker does about a finding of some severity.
type Response string

// Responses, mildest first.
const (
	RespondAlert    Response = "alert"    // store, audit and notify only
	RespondThrottle Response = "throttle" // also: a token bucket limits the identity's calls
	RespondSuspend  Response = "suspend"  // also: the identity is suspended (tokens die, approvals expire)
)

// DefaultResponses: high findings throttle, critical ones suspend.
var DefaultResponses = map[Severity]Response{Info: RespondAlert, Low: RespondAlert, Medium: RespondAlert, High: RespondThrottle, Critical: RespondSuspend}

// Auditor makes the monitor's events durable (*audit.Log).
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Receipt, error)
}

// Identities is the registry the monitor reads names from and suspends
// through (*identity.Service).
type Identities interface {
	Cached(ctx context.Context, id string) (*identity.Identity, error)
	Resolve(ctx context.Context, ref string) (*identity.Identity, error)
	SuspendBySystem(ctx context.Context, actor, ref, reason string) (*identity.Identity, error)
	Suspend(ctx context.Context, p warden.Principal, ref, reason string) (*identity.Identity, error)
	Resume(ctx context.Context, p warden.Principal, ref, reason string) (*identity.Identity, error)
	Get(ctx context.Context, p warden.Principal, ref string) (*identity.Identity, error)
	List(ctx context.Context, p warden.Principal, f identity.Filter) ([]*identity.Identity, string, error)
}

// ThrottleOptions shape the token bucket a throttled identity gets.
type ThrottleOptions struct {
	Rate  float64       // calls per second (default 1)
	Burst int           // bucket size (default 5)
	For   time.Duration // how long the throttle lasts (default 15m)
}

// Options are the monitor's dependencies and settings.
type Options struct {
	Store      Store
	Identities Identities
	Audit      Auditor
	Registry   prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock for finding times and throttles (default time.Now).
	// Baselines use each observation's own time.
	Now       func() time.Time
	Tuning    Tuning
	Responses map[Severity]Response // missing severities take DefaultResponses
	Throttle  ThrottleOptions
	// QueueSize bounds the observation queue (default 65536).
	QueueSize int
	// SnapshotEvery is how often changed baselines are saved (default 30s).
	SnapshotEvery time.Duration
	// MaxIdentities bounds how many identities have a baseline (default
	// 100,000); observations of others are counted and not learned.
	MaxIdentities int
	// Webhook, when its URL is set, receives a signed alert per finding.
	Webhook WebhookOptions
}

// Actor is how the monitor names itself in status changes and audit events.
const Actor = "monitor"

// item is one queued observation, or a barrier (Sync).
type item struct {
	o       gate.Observation
	barrier chan struct{}
}

// job is one finding for the responder, or a barrier.
type job struct {
	f       *Finding
	barrier chan struct{}
}

// Monitor learns baselines, runs detectors and trips the breaker.
type Monitor struct {
	o        Options
	queue    chan item
	jobs     chan job
	snaps    chan []Snapshot
	eng      *engine
	names    map[string]nameEntry // detector goroutine only
	hook     *webhook
	dropped  atomic.Uint64
	seen     atomic.Uint64
	lastDrop uint64 // detector goroutine only

	throttles  sync.Map // identity id -> *bucket
	nThrottled atomic.Int64

	findings *prometheus.CounterVec
	ttd, ttc prometheus.Histogram

	running atomic.Bool
}

type nameEntry struct {
	w  who
	at time.Time
}

// New validates o and returns a monitor; call Load, then Run.
func New(o Options) (*Monitor, error) {
	if o.Store == nil {
		return nil, errors.New("monitor: a store is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	o.Tuning = o.Tuning.withDefaults()
	if err := o.Tuning.validate(); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	resp := map[Severity]Response{}
	for s, r := range DefaultResponses {
		resp[s] = r
	}
	for s, r := range o.Responses {
		if s.Rank() == 0 {
			return nil, fmt.Errorf("monitor: responses: unknown severity %q (info, low, medium, high, critical)", s)
		}
		switch r {
		case RespondAlert, RespondThrottle, RespondSuspend:
		default:
			return nil, fmt.Errorf("monitor: responses.%s: %q must be alert, throttle or suspend", s, r)
		}
		resp[s] = r
	}
	o.Responses = resp
	if o.Throttle.Rate == 0 {
		o.Throttle.Rate = 1
	}
	if o.Throttle.Burst == 0 {
		o.Throttle.Burst = 5
	}
	if o.Throttle.For == 0 {
		o.Throttle.For = 15 * time.Minute
	}
	if o.Throttle.Rate < 0 || o.Throttle.Rate > 10000 || o.Throttle.Burst < 1 || o.Throttle.For < time.Second || o.Throttle.For > 7*24*time.Hour {
		return nil, errors.New("monitor: throttle: rate must be in (0, 10000], burst at least 1, duration between 1s and 168h")
	}
	if o.QueueSize == 0 {
		o.QueueSize = 1 << 16
	}
	if o.QueueSize < 1 || o.QueueSize > 1<<22 {
		return nil, errors.New("monitor: queue_size must be between 1 and 4194304")
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = 30 * time.Second
	}
	if o.MaxIdentities == 0 {
		o.MaxIdentities = 100_000
	}
	m := &Monitor{o: o, queue: make(chan item, o.QueueSize), jobs: make(chan job, 1024), snaps: make(chan []Snapshot, 1),
		eng: newEngine(o.Tuning, o.MaxIdentities), names: map[string]nameEntry{}}
	if o.Webhook.URL != "" {
		if u, err := url.Parse(o.Webhook.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("monitor: webhook_url must be an http(s) URL")
		}
		if o.Webhook.Logger == nil {
			o.Webhook.Logger = o.Logger
		}
		m.hook = newWebhook(o.Webhook)
	}
	m.metrics(o.Registry)
	return m, nil
}

func (m *Monitor) metrics(reg prometheus.Registerer) {
	m.findings = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_monitor_findings_total", Help: "Findings raised, by detector and severity."}, []string{"detector", "severity"})
	buckets := []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	m.ttd = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_monitor_time_to_detect_seconds", Help: "From the first anomalous observation to the finding.", Buckets: buckets})
	m.ttc = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_monitor_time_to_contain_seconds", Help: "From the finding to the throttle or suspension taking effect.", Buckets: buckets})
	reg.MustRegister(m.findings, m.ttd, m.ttc,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_monitor_observations_dropped_total", Help: "Observations dropped because the monitor's queue was full."},
			func() float64 { return float64(m.dropped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_monitor_observations_total", Help: "Observations the detectors processed."},
			func() float64 { return float64(m.seen.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_monitor_queue_length", Help: "Observations waiting for the detectors."},
			func() float64 { return float64(len(m.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_monitor_throttled_identities", Help: "Identities the breaker is throttling now."},
			func() float64 { return float64(m.nThrottled.Load()) }),
	)
}

// Observe enqueues o for the detectors. It never blocks and does not
// allocate: when the queue is full, o is dropped and counted (the metric
// warden_monitor_observations_dropped_total, and a queue_overflow finding).
func (m *Monitor) Observe(o gate.Observation) {
	select {
	case m.queue <- item{o: o}:
	default:
		m.dropped.Add(1)
	}
}

// Dropped returns how many observations were dropped so far.
func (m *Monitor) Dropped() uint64 { return m.dropped.Load() }

// Load reads the persisted baselines. Call it before Run; a snapshot that
// does not decode (or has another format version) is skipped and logged,
// and that identity learns again.
func (m *Monitor) Load(ctx context.Context) error {
	snaps, err := m.o.Store.LoadBaselines(ctx)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		b := &baseline{}
		if err := json.Unmarshal(s.Data, b); err != nil || b.V != snapshotVersion || b.ID != s.IdentityID {
			m.o.Logger.Warn("monitor: ignoring an unreadable baseline; the identity learns again", "identity", s.IdentityID, "err", err)
			continue
		}
		b.fix()
		m.eng.ids[b.ID] = b
	}
	return nil
}

// Run processes observations until ctx ends, then drains what is queued,
// saves the baselines and returns once every finding is handled.
func (m *Monitor) Run(ctx context.Context) {
	if !m.running.CompareAndSwap(false, true) {
		panic("monitor: Run called twice")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.responder() }()
	go func() { defer wg.Done(); m.persister() }()
	hookCtx, stopHook := context.WithCancel(context.Background())
	if m.hook != nil {
		wg.Add(1)
		go func() { defer wg.Done(); m.hook.run(hookCtx) }()
	}
	tick := time.NewTicker(m.o.SnapshotEvery)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case it := <-m.queue:
			m.handle(it)
		case <-tick.C:
			m.periodic(false)
		case <-ctx.Done():
			done = true
		}
	}
	// Drain what was queued before shutdown (the HTTP server has stopped,
	// so nothing new arrives but a straggler).
	for n := len(m.queue); n > 0; n-- {
		m.handle(<-m.queue)
	}
	m.periodic(true)
	close(m.jobs)
	close(m.snaps)
	if m.hook != nil {
		// Give queued alerts a moment to go out, then stop retrying.
		m.hook.drain(5 * time.Second)
	}
	stopHook()
	wg.Wait()
}

// Sync waits until every observation enqueued before it has been through
// the detectors and the responder, and the baselines are saved. Tests and
// shutdown use it; it is not for the hot path.
func (m *Monitor) Sync(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case m.queue <- item{barrier: ch}:
	case <-ctx.Done():
		return warden.Wrap(ctx.Err(), warden.CodeUnavailable, "monitor busy")
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return warden.Wrap(ctx.Err(), warden.CodeUnavailable, "monitor busy")
	}
}

func (m *Monitor) handle(it item) {
	if it.barrier != nil {
		m.saveNow()
		m.jobs <- job{barrier: it.barrier}
		return
	}
	m.seen.Add(1)
	fs := m.eng.observe(&it.o, m.who(it.o.IdentityID))
	for _, f := range fs {
		m.raise(f)
	}
}

// raise stamps a finding and hands it to the responder. The send blocks
// when the responder is behind: findings are never dropped (observations
// are, and that is counted and reported).
func (m *Monitor) raise(f *Finding) {
	f.ID = warden.NewID(warden.PrefixFinding)
	f.DetectedAt = m.o.Now().UTC()
	if f.FirstEventAt.IsZero() || f.FirstEventAt.After(f.DetectedAt) {
		f.FirstEventAt = f.DetectedAt
	}
	f.Status = StatusOpen
	m.jobs <- job{f: f}
}

// who returns the identity's name and owner, cached for a minute.
func (m *Monitor) who(id string) who {
	now := time.Now()
	if e, ok := m.names[id]; ok && now.Sub(e.at) < time.Minute {
		return e.w
	}
	var w who
	if m.o.Identities != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if x, err := m.o.Identities.Cached(ctx, id); err == nil {
			w = who{Name: x.Name, Owner: x.Owner}
		}
		cancel()
	}
	if len(m.names) > 2*m.o.MaxIdentities {
		clear(m.names)
	}
	m.names[id] = nameEntry{w: w, at: now}
	return w
}

// periodic reports dropped observations, sweeps expired windows and hands
// changed baselines to the persister.
func (m *Monitor) periodic(final bool) {
	now := m.o.Now().UTC()
	if d := m.dropped.Load(); d > m.lastDrop {
		n := d - m.lastDrop
		m.lastDrop = d
		m.o.Logger.Error("monitor: observation queue full; observations dropped", "dropped", n, "queue_size", m.o.QueueSize)
		f := &Finding{Detector: DetQueueOverflow, Severity: High, subject: "queue",
			Explanation: fmt.Sprintf("the monitor dropped %d observations because its queue (%d) was full: findings may be late or missed until it catches up; the breaker acts on what it did see", n, m.o.QueueSize),
			Evidence:    map[string]any{"dropped": n, "dropped_total": d, "queue_size": m.o.QueueSize}}
		if m.eng.fresh(f, now) || final {
			m.raise(f)
		}
	}
	m.eng.sweep(now)
	snaps := m.collect()
	if len(snaps) == 0 {
		return
	}
	if final {
		m.snaps <- snaps
		return
	}
	select {
	case m.snaps <- snaps:
	default:
		// The persister is still writing the previous batch: keep these
		// dirty for the next round.
		for _, s := range snaps {
			if b := m.eng.ids[s.IdentityID]; b != nil {
				b.dirty = true
			}
		}
	}
}

// collect encodes every changed baseline and marks it clean.
func (m *Monitor) collect() []Snapshot {
	var out []Snapshot
	now := m.o.Now().UTC()
	for id, b := range m.eng.ids {
		if !b.dirty {
			continue
		}
		data, err := json.Marshal(b)
		if err != nil {
			m.o.Logger.Error("monitor: encoding a baseline", "identity", id, "err", err)
			continue
		}
		b.dirty = false
		out = append(out, Snapshot{IdentityID: id, Data: data, UpdatedAt: now})
	}
	return out
}

// saveNow writes changed baselines from the detector goroutine (Sync).
func (m *Monitor) saveNow() {
	snaps := m.collect()
	if len(snaps) == 0 {
		return
	}
	m.save(snaps)
}

func (m *Monitor) save(snaps []Snapshot) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.o.Store.SaveBaselines(ctx, snaps); err != nil {
		m.o.Logger.Error("monitor: saving baselines (they stay in memory and are retried)", "identities", len(snaps), "err", err)
	}
}

func (m *Monitor) persister() {
	for snaps := range m.snaps {
		m.save(snaps)
	}
}

func (m *Monitor) responder() {
	for j := range m.jobs {
		if j.barrier != nil {
			if m.hook != nil {
				m.hook.flushQueued()
			}
			close(j.barrier)
			continue
		}
		m.respond(j.f)
	}
}

// respond takes the breaker's action first (containment does not wait for
// bookkeeping), then counts, audits, stores and notifies.
func (m *Monitor) respond(f *Finding) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := m.o.Responses[f.Severity]
	if f.IdentityID == "" {
		resp = RespondAlert
	}
	f.ActionTaken = string(RespondAlert)
	switch resp {
	case RespondThrottle:
		m.throttle(f)
		f.ActionTaken = string(RespondThrottle)
		m.contained(f)
	case RespondSuspend:
		_, err := m.suspend(ctx, f)
		switch {
		case err == nil:
			f.ActionTaken = string(RespondSuspend)
			m.contained(f)
		case warden.IsCode(err, warden.CodeConflict):
			f.ActionTaken = "suspend (already suspended or decommissioned)"
			m.contained(f)
		default:
			// Err on the safe side: if the identity cannot be suspended
			// (database down), at least slow it down here.
			m.o.Logger.Error("monitor: suspending an identity failed; throttling it instead", "identity", f.IdentityID, "finding", f.ID, "err", err)
			m.throttle(f)
			f.ActionTaken = "throttle (suspend failed)"
			m.contained(f)
		}
	}
	// Metrics and the audit event come before the stored finding, so a
	// finding visible through the API always has both.
	m.findings.WithLabelValues(f.Detector, string(f.Severity)).Inc()
	m.ttd.Observe(max(f.DetectedAt.Sub(f.FirstEventAt).Seconds(), 0))
	if f.ContainedAt != nil {
		m.ttc.Observe(max(f.ContainedAt.Sub(f.DetectedAt).Seconds(), 0))
	}
	m.auditFinding(ctx, f)
	m.store(ctx, f)
	if m.hook != nil {
		m.hook.notify(f)
	}
}

func (m *Monitor) contained(f *Finding) {
	t := m.o.Now().UTC()
	f.ContainedAt = &t
}

func (m *Monitor) suspend(ctx context.Context, f *Finding) (*identity.Identity, error) {
	if m.o.Identities == nil {
		return nil, errors.New("no identity registry")
	}
	reason := clip(fmt.Sprintf("circuit breaker (finding %s, %s %s): %s", f.ID, f.Severity, f.Detector, printableOnly(f.Explanation)), 1024)
	return m.o.Identities.SuspendBySystem(ctx, Actor, f.IdentityID, reason)
}

// store saves f, retrying briefly: a finding whose action was taken must
// not vanish because the database hiccuped.
func (m *Monitor) store(ctx context.Context, f *Finding) {
	var err error
	for attempt, wait := 0, 100*time.Millisecond; attempt < 5; attempt, wait = attempt+1, wait*2 {
		if err = m.o.Store.CreateFinding(ctx, f); err == nil || warden.IsCode(err, warden.CodeConflict) {
			return
		}
		select {
		case <-ctx.Done():
			attempt = 5
		case <-time.After(wait):
		}
	}
	m.o.Logger.Error("monitor: a finding could not be stored (it is in the log and the audit trail)", "finding", f.ID, "identity", f.IdentityID,
		"detector", f.Detector, "severity", f.Severity, "action_taken", f.ActionTaken, "explanation", f.Explanation, "err", err)
}

func (m *Monitor) auditFinding(ctx context.Context, f *Finding) {
	if m.o.Audit == nil {
		return
	}
	detail, _ := json.Marshal(map[string]any{"finding_id": f.ID, "detector": f.Detector, "severity": f.Severity, "action_taken": f.ActionTaken,
		"first_event_at": f.FirstEventAt, "key_id": f.KeyID, "evidence": f.Evidence})
	e := audit.Event{Time: f.DetectedAt, Kind: audit.KindFinding, Actor: "system:" + Actor, Identity: f.IdentityID, Action: f.Action,
		Decision: f.ActionTaken, Code: f.Detector, Reason: f.Explanation, Detail: detail}
	if _, err := m.o.Audit.Append(ctx, e); err != nil {
		m.o.Logger.Error("monitor: auditing a finding failed", "finding", f.ID, "err", err)
	}
}

// auditHuman records a human's breaker or finding action.
func (m *Monitor) auditHuman(ctx context.Context, p warden.Principal, action, identityID, reason string, detail map[string]any) {
	if m.o.Audit == nil {
		return
	}
	d, _ := json.Marshal(detail)
	e := audit.Event{Kind: audit.KindLifecycle, Actor: p.Actor(), ActorRoles: p.Roles, Identity: identityID, Action: action,
		Decision: "applied", Reason: reason, Detail: d}
	if _, err := m.o.Audit.Append(ctx, e); err != nil {
		m.o.Logger.Error("monitor: auditing a breaker action failed", "action", action, "err", err)
	}
}

// printableOnly replaces control characters (identity reasons must be
// printable text).
func printableOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
