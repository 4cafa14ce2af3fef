// Package auditsink streams the audit chain to outside systems (a SIEM's
// HTTP collector, a syslog server) without ever holding up the writer or
// losing an event.
//
// A sink keeps no copy of events: the chain in the database is its backlog.
// Each sink has a cursor (the last seq it delivered) in the database; it
// reads the events after its cursor in batches, delivers a batch, and only
// then advances the cursor, by compare-and-set. So:
//
//   - Append never waits for a sink; a slow or dead receiver only makes the
//     sink's lag grow (warden_audit_sink_lag_events).
//   - A sink that was down for a day, or a Warden that restarted, resumes
//     exactly after the last event the receiver acknowledged.
//   - Delivery is at least once: a batch the receiver took but whose cursor
//     update was lost (crash, database outage) is sent again. Every event
//     carries seq (gapless) and id, so receivers de-duplicate on them.
//   - Replicas sharing a database take a short lease per sink, so normally
//     one of them delivers; the compare-and-set keeps the cursor right even
//     when two deliver at once.
//
// MinCursor tells retention which events every sink with a cursor (on any
// replica, retired or not) has delivered; events after it must stay in the
// database.
package auditsink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/audit"
)

// Sink types.
const (
	TypeWebhook = "webhook"
	TypeSyslog  = "syslog"
)

// Defaults for zero Config fields.
const (
	DefaultBatchSize     = 500
	DefaultMaxBatchBytes = 4 << 20
	DefaultPollInterval  = time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultBackoff       = time.Second
	DefaultMaxBackoff    = time.Minute
	DefaultMaxLag        = 10000
	DefaultLease         = 30 * time.Second
)

// Config is one sink.
type Config struct {
	// Name identifies the sink's cursor: renaming a sink starts it from the
	// oldest event again. Lowercase letters, digits and '-'.
	Name string
	// Type is TypeWebhook or TypeSyslog.
	Type string
	// Format is audit.FormatJSONL (the event as export writes it, the
	// default) or audit.FormatOCSF.
	Format string
	// Kinds, when not empty, selects the event kinds delivered; the cursor
	// still moves past the others.
	Kinds []string

	// URL (webhook) is the http(s) endpoint that receives batches.
	URL string
	// Secret (webhook), when set, signs every batch like internal/webhook.
	Secret warden.Secret
	// Authorization (webhook), when set, is sent as the Authorization
	// header (a collector's token, e.g. "Splunk <token>").
	Authorization warden.Secret

	// Network (syslog) is "udp", "tcp" or "tls"; Address is host:port.
	Network string
	Address string
	// Hostname (syslog) is the HOSTNAME field (default: os.Hostname()).
	Hostname string

	// CAFile is a PEM bundle that replaces the system roots for verifying
	// the receiver's certificate (https webhooks, syslog over tls).
	CAFile string

	// BatchSize and MaxBatchBytes bound one delivery (defaults 500 events,
	// 4 MiB; a single larger event still goes alone). PollInterval is how
	// often a caught-up sink looks for new events (default 1s).
	BatchSize     int
	MaxBatchBytes int
	PollInterval  time.Duration
	// Timeout bounds one delivery (default 10s). A failed delivery is
	// retried after Backoff, doubling up to MaxBackoff (defaults 1s, 1m),
	// with jitter, for as long as it takes: nothing is ever skipped.
	Timeout    time.Duration
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxLag is how many events behind the head the sink may fall before
	// it logs a warning (default 10000).
	MaxLag int64
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks c without touching the network or the file system.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return warden.FieldError("name", "%q must be 1-63 lowercase letters, digits or '-'", c.Name)
	}
	switch c.Format {
	case "", audit.FormatJSONL, audit.FormatOCSF:
	default:
		return warden.FieldError("format", "%q must be jsonl or ocsf", c.Format)
	}
	for _, k := range c.Kinds {
		// A typo would filter out every event while the cursor (and
		// retention behind it) moves past them.
		if !slices.Contains(audit.Kinds(), k) {
			return warden.FieldError("kinds", "%q is not an event kind (known kinds: %s)", k, strings.Join(audit.Kinds(), ", "))
		}
	}
	switch c.Type {
	case TypeWebhook:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return warden.FieldError("url", "must be an http(s) URL")
		}
	case TypeSyslog:
		switch c.Network {
		case "udp", "tcp", "tls":
		default:
			return warden.FieldError("network", "%q must be udp, tcp or tls", c.Network)
		}
		// A missing host (":6514") would dial this machine and, over tls,
		// fail every handshake for ever.
		if host, port, err := net.SplitHostPort(c.Address); err != nil || host == "" || port == "" {
			return warden.FieldError("address", "%q must be host:port with a host (e.g. siem.example.com:6514)", c.Address)
		}
	default:
		return warden.FieldError("type", "%q must be webhook or syslog", c.Type)
	}
	if c.BatchSize < 0 || c.BatchSize > audit.MaxLimit {
		return warden.FieldError("batch_size", "must be between 1 and %d", audit.MaxLimit)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Format == "" {
		c.Format = audit.FormatJSONL
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	if c.MaxLag <= 0 {
		c.MaxLag = DefaultMaxLag
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
}

// Store is what sinks read and write: the chain (internal/store satisfies
// it with audit.Store's QueryAudit and AuditHead) and the cursors.
type Store interface {
	QueryAudit(ctx context.Context, f audit.Filter) ([]audit.Event, error)
	AuditHead(ctx context.Context) (audit.Head, error)
	// AuditSinkCursor returns the sink's cursor, creating it at 0.
	AuditSinkCursor(ctx context.Context, name string) (int64, error)
	// AdvanceAuditSinkCursor moves the cursor from -> to only if it is at
	// from, and reports whether it did.
	AdvanceAuditSinkCursor(ctx context.Context, name string, from, to int64) (bool, error)
	// ClaimAuditSink and ReleaseAuditSink manage the delivery lease.
	ClaimAuditSink(ctx context.Context, name, owner string, now, until time.Time) (bool, error)
	ReleaseAuditSink(ctx context.Context, name, owner string) error
	// LowestSinkCursor returns the lowest cursor of every sink that has
	// one (configured on any replica, or retired), ok=false when none has.
	LowestSinkCursor(ctx context.Context) (name string, seq int64, ok bool, err error)
}

// Options configure New.
type Options struct {
	Store Store
	Sinks []Config
	// Registry receives the sinks' metrics (default: a private registry).
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Lease is how long a replica keeps delivering for a sink without
	// renewing (default 30s, at least three delivery timeouts).
	Lease time.Duration
}

// Sinks runs the configured sinks. Its methods are safe for concurrent use.
type Sinks struct {
	store Store
	log   *slog.Logger
	owner string
	sinks []*sink
}

// New checks the sinks' configuration, loads CA files and registers the
// metrics. It does not connect to anything; Run does.
func New(o Options) (*Sinks, error) {
	if o.Store == nil {
		return nil, errors.New("auditsink: a store is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	host, _ := os.Hostname()
	s := &Sinks{store: o.Store, log: o.Logger, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), warden.RandomString(8))}
	m := newMetrics(o.Registry)
	seen := map[string]bool{}
	for _, c := range o.Sinks {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("audit sink %q: %w", c.Name, err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("audit sink %q: the name is used twice", c.Name)
		}
		seen[c.Name] = true
		c.defaults()
		var roots *x509.CertPool
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("audit sink %q: ca_file: %w", c.Name, err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("audit sink %q: ca_file %s holds no PEM certificate", c.Name, c.CAFile)
			}
		}
		var t transport
		switch c.Type {
		case TypeWebhook:
			t = newWebhook(c, roots)
		case TypeSyslog:
			t = newSyslog(c, roots)
		}
		lease := o.Lease
		if lease <= 0 {
			lease = DefaultLease
		}
		lease = max(lease, 3*c.Timeout)
		kinds := map[string]bool{}
		for _, k := range c.Kinds {
			kinds[k] = true
		}
		s.sinks = append(s.sinks, &sink{
			cfg: c, store: o.Store, owner: s.owner, lease: lease, t: t, kinds: kinds,
			log:       o.Logger.With("sink", c.Name),
			lag:       m.lag.WithLabelValues(c.Name),
			delivered: m.delivered.WithLabelValues(c.Name),
			failures:  m.failures.WithLabelValues(c.Name),
		})
	}
	return s, nil
}

type metrics struct {
	lag                 *prometheus.GaugeVec
	delivered, failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "warden_audit_sink_lag_events",
			Help: "Events committed to the audit chain that the sink has not delivered yet."}, []string{"sink"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_sink_delivered_total",
			Help: "Events the sink delivered (receivers may see a few twice: delivery is at least once)."}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_sink_failures_total",
			Help: "Failed delivery attempts (each is retried)."}, []string{"sink"}),
	}
	reg.MustRegister(m.lag, m.delivered, m.failures)
	return m
}

// Run delivers for every sink until ctx ends, then releases this replica's
// leases so another can take over at once. Failures are retried, never
// returned: a sink only ever falls behind.
func (s *Sinks) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, k := range s.sinks {
		wg.Go(func() { k.run(ctx) })
	}
	wg.Wait()
}

// MinCursor returns the lowest cursor among the configured sinks and every
// cursor row in the database: every event up to and including it was
// delivered by every sink, and events after it must stay in the database.
// So a sink configured only on another replica holds retention back too,
// and so does a retired sink until its row is deleted (DELETE FROM
// audit_sink_cursors WHERE name = '...'); MinCursor logs which sink holds
// the others back when it is not one this replica runs. Without sinks and
// cursor rows it returns the head (nothing is held back). A sink that never
// delivered holds everything back (0).
func (s *Sinks) MinCursor(ctx context.Context) (int64, error) {
	low, lowName := int64(-1), ""
	for _, k := range s.sinks {
		// Creates the row of a sink that has not run yet.
		c, err := s.store.AuditSinkCursor(ctx, k.cfg.Name)
		if err != nil {
			return 0, err
		}
		if low < 0 || c < low {
			low, lowName = c, k.cfg.Name
		}
	}
	name, seq, ok, err := s.store.LowestSinkCursor(ctx)
	if err != nil {
		return 0, err
	}
	if ok && (low < 0 || seq < low) {
		low, lowName = seq, name
	}
	if low < 0 {
		h, err := s.store.AuditHead(ctx)
		return h.Seq, err
	}
	if h, err := s.store.AuditHead(ctx); err == nil && low < h.Seq {
		if slices.ContainsFunc(s.sinks, func(k *sink) bool { return k.cfg.Name == lowName }) {
			s.log.Debug("audit sink holds audit retention back", "sink", lowName, "cursor", low, "head", h.Seq)
		} else {
			s.log.Info("audit sink not configured on this replica holds audit retention back; if it is retired, delete its cursor: DELETE FROM audit_sink_cursors WHERE name = '"+lowName+"'",
				"sink", lowName, "cursor", low, "head", h.Seq)
		}
	}
	return low, nil
}

// Status is one sink's state as this replica sees it.
type Status struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Cursor is the last seq delivered; Lag the events behind the head
	// when last looked at.
	Cursor int64 `json:"cursor"`
	Lag    int64 `json:"lag"`
	// Active is true when this replica holds the sink's lease.
	Active       bool      `json:"active"`
	Delivered    int64     `json:"delivered"`
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
}

// Status reports every sink's state, in configuration order.
func (s *Sinks) Status() []Status {
	out := make([]Status, 0, len(s.sinks))
	for _, k := range s.sinks {
		k.mu.Lock()
		st := k.st
		k.mu.Unlock()
		st.Name, st.Type = k.cfg.Name, k.cfg.Type
		out = append(out, st)
	}
	return out
}

// transport delivers one batch: lines[i] is evs[i] encoded in the sink's
// format, ending in '\n'. nil means the receiver has every event.
type transport interface {
	send(ctx context.Context, evs []*audit.Event, lines [][]byte) error
	close()
}

type sink struct {
	cfg   Config
	store Store
	owner string
	lease time.Duration
	t     transport
	kinds map[string]bool
	log   *slog.Logger

	lag                 prometheus.Gauge
	delivered, failures prometheus.Counter

	// Owned by the run goroutine.
	cursor    int64
	haveCur   bool // cursor is the stored one and this replica holds the lease
	haveRow   bool // the cursor row exists
	lagWarned time.Time
	enc       encoder

	mu sync.Mutex // guards st
	st Status
}

func (k *sink) run(ctx context.Context) {
	defer k.t.close()
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := k.store.ReleaseAuditSink(rctx, k.cfg.Name, k.owner); err != nil {
			k.log.Warn("audit sink: releasing the delivery lease", "err", err)
		}
	}()
	backoff := k.cfg.Backoff
	failing := 0
	for {
		idle, err := k.cycle(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := time.Duration(0)
		switch {
		case err != nil:
			failing++
			k.failures.Inc()
			k.mu.Lock()
			k.st.LastError, k.st.LastErrorAt = err.Error(), time.Now().UTC()
			k.mu.Unlock()
			// Equal jitter: replicas and sinks that failed together do not
			// retry in step.
			wait = backoff/2 + rand.N(backoff/2+1)
			k.log.Warn("audit sink: delivery failed; retrying", "err", err, "attempt", failing, "retry_in", wait.Round(time.Millisecond).String(), "cursor", k.cursor)
			backoff = min(2*backoff, k.cfg.MaxBackoff)
		case idle:
			wait = k.cfg.PollInterval
		}
		if err == nil {
			if failing > 0 {
				k.log.Info("audit sink: delivering again", "failed_attempts", failing, "cursor", k.cursor)
			}
			failing, backoff = 0, k.cfg.Backoff
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// cycle delivers at most one batch. idle reports that there is nothing to
// do now (caught up, or another replica holds the lease).
func (k *sink) cycle(ctx context.Context) (idle bool, err error) {
	now := time.Now()
	owner, err := k.store.ClaimAuditSink(ctx, k.cfg.Name, k.owner, now, now.Add(k.lease))
	if err == nil && !owner && !k.haveRow {
		// The lease lives in the cursor's row, which a new sink lacks.
		if _, err = k.store.AuditSinkCursor(ctx, k.cfg.Name); err == nil {
			k.haveRow = true
			owner, err = k.store.ClaimAuditSink(ctx, k.cfg.Name, k.owner, now, now.Add(k.lease))
		}
	}
	if err != nil {
		return false, fmt.Errorf("claiming the delivery lease: %w", err)
	}
	if !owner || !k.haveCur {
		// Another replica may have moved the cursor while it held the
		// lease: a new owner starts from the stored cursor.
		c, err := k.store.AuditSinkCursor(ctx, k.cfg.Name)
		if err != nil {
			return false, fmt.Errorf("reading the cursor: %w", err)
		}
		k.cursor, k.haveCur, k.haveRow = c, owner, true
	}
	head, err := k.store.AuditHead(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the audit head: %w", err)
	}
	k.observe(head.Seq, owner)
	if !owner || head.Seq <= k.cursor {
		return true, nil
	}
	evs, err := k.store.QueryAudit(ctx, audit.Filter{After: k.cursor, Ascending: true, Limit: k.cfg.BatchSize})
	if err != nil {
		return false, fmt.Errorf("reading events: %w", err)
	}
	if len(evs) == 0 {
		return true, nil
	}
	if first := evs[0].Seq; first != k.cursor+1 && k.cursor > 0 {
		k.log.Warn("audit sink: events after the cursor are no longer in the database (archived or deleted before this sink delivered them)",
			"missing_from", k.cursor+1, "missing_to", first-1)
	}
	sel, lines, last, err := k.batch(evs)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	// From here the batch is sent and its cursor recorded even when ctx
	// ends (shutdown): cancelling a POST the receiver may already have
	// taken, or the cursor update after it, would make every restart send
	// the batch again. Both together are bounded by one delivery timeout,
	// so shutdown waits at most that long, also for a receiver that hangs.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.Timeout)
	defer cancel()
	if len(sel) > 0 {
		if err := k.t.send(dctx, sel, lines); err != nil {
			return false, err
		}
	}
	moved, err := k.store.AdvanceAuditSinkCursor(dctx, k.cfg.Name, k.cursor, last)
	if err != nil {
		// Delivered but not recorded: the batch goes again (at least once).
		return false, fmt.Errorf("recording the cursor: %w", err)
	}
	if !moved {
		// Another replica delivered and moved it; start from where it is.
		k.haveCur = false
		return false, nil
	}
	k.cursor = last
	k.delivered.Add(float64(len(sel)))
	k.mu.Lock()
	k.st.Delivered += int64(len(sel))
	if len(sel) > 0 {
		k.st.LastDelivery = time.Now().UTC()
	}
	k.mu.Unlock()
	k.observe(head.Seq, true)
	return k.cursor >= head.Seq, nil
}

// batch encodes the events the sink delivers (its kinds), at most
// MaxBatchBytes of them (at least one), and returns the seq the cursor may
// move to once they are delivered: the last event encoded or skipped.
func (k *sink) batch(evs []audit.Event) (sel []*audit.Event, lines [][]byte, last int64, err error) {
	size := 0
	for i := range evs {
		e := &evs[i]
		if len(k.kinds) > 0 && !k.kinds[e.Kind] {
			last = e.Seq
			continue
		}
		line, err := k.enc.encode(k.cfg.Format, e)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("encoding event %d: %w", e.Seq, err)
		}
		if len(sel) > 0 && size+len(line) > k.cfg.MaxBatchBytes {
			break
		}
		size += len(line)
		sel, lines, last = append(sel, e), append(lines, line), e.Seq
	}
	return sel, lines, last, nil
}

// observe records the lag and warns (at most once a minute) while it is
// above MaxLag.
func (k *sink) observe(head int64, owner bool) {
	lag := max(head-k.cursor, 0)
	k.lag.Set(float64(lag))
	k.mu.Lock()
	k.st.Cursor, k.st.Lag, k.st.Active = k.cursor, lag, owner
	k.mu.Unlock()
	switch {
	case lag > k.cfg.MaxLag && time.Since(k.lagWarned) >= time.Minute:
		k.lagWarned = time.Now()
		k.log.Warn("audit sink is falling behind: events wait in the database until it delivers them", "lag", lag, "max_lag", k.cfg.MaxLag, "cursor", k.cursor, "head", head)
	case lag <= k.cfg.MaxLag && !k.lagWarned.IsZero():
		k.lagWarned = time.Time{}
		k.log.Info("audit sink caught up below max_lag", "lag", lag)
	}
}
