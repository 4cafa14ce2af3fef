package monitor

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/internal/gate"
)

// nopStore satisfies Store for benchmarks that never reach it.
type nopStore struct{}

func (nopStore) CreateFinding(context.Context, *Finding) error { return nil }
func (nopStore) GetFinding(context.Context, string) (*Finding, error) {
	return nil, nil
}
func (nopStore) ListFindings(context.Context, Filter) ([]*Finding, string, error) {
	return nil, "", nil
}
func (nopStore) UpdateFinding(context.Context, *Finding, string) error { return nil }
func (nopStore) SaveBaselines(context.Context, []Snapshot) error       { return nil }
func (nopStore) LoadBaselines(context.Context) ([]Snapshot, error)     { return nil, nil }

func benchObservation() gate.Observation {
	return gate.Observation{Time: time.Now(), IdentityID: "nhi_0123456789abcdefghjk", KeyID: "key_0123456789abcdefghjk",
		Action: "gmail:messages.send", Class: "write", Decision: "allow", Code: "allowed", ClientIP: "198.51.100.7",
		UserAgent: "python-requests/2.31.0", BytesIn: 512}
}

// BenchmarkObserve is the hot-path cost: what the gate pays per call. The
// queue is drained by a running monitor, as in production.
func BenchmarkObserve(b *testing.B) {
	m, err := New(Options{Store: nopStore{}, Registry: prometheus.NewRegistry(), SnapshotEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	o := benchObservation()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Observe(o)
	}
	b.StopTimer()
	b.ReportMetric(float64(m.Dropped()), "dropped")
}

// BenchmarkObserveParallel: many request goroutines observing at once.
func BenchmarkObserveParallel(b *testing.B) {
	m, err := New(Options{Store: nopStore{}, Registry: prometheus.NewRegistry(), SnapshotEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	o := benchObservation()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(o)
		}
	})
}

// BenchmarkObserveFull: the queue is full and nobody drains it (the
// overload case): Observe drops and counts.
func BenchmarkObserveFull(b *testing.B) {
	m, err := New(Options{Store: nopStore{}, Registry: prometheus.NewRegistry(), QueueSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	o := benchObservation()
	m.Observe(o)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(o)
	}
}

// BenchmarkThrottledCheck is the gate's throttle check when nobody is
// throttled (the common case) and when the identity is.
func BenchmarkThrottledCheck(b *testing.B) {
	m, err := New(Options{Store: nopStore{}, Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Throttled("nhi_0123456789abcdefghjk", now)
		}
	})
	m.throttle(&Finding{ID: "fnd_x", IdentityID: "nhi_other", Severity: High, Detector: DetRateSpike})
	b.Run("other-throttled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Throttled("nhi_0123456789abcdefghjk", now)
		}
	})
}

// BenchmarkDetectors is detector throughput: observations per second the
// single detection goroutine sustains over 1,000 identities with learned
// baselines (decided and completed observations, rotating operations,
// networks and clients).
func BenchmarkDetectors(b *testing.B) {
	e := newEngine(DefaultTuning.withDefaults(), 100_000)
	ops := []string{"gmail:messages.send", "gmail:messages.list", "crm:contacts.get", "crm:contacts.list", "github:issues.create"}
	const ids = 1000
	names := make([]string, ids)
	for i := range names {
		names[i] = "nhi_" + strconv.Itoa(i)
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	// The stream is built once (the generator is not what is measured);
	// only the time moves.
	ring := make([]gate.Observation, ids*len(ops))
	for i := range ring {
		ring[i] = gate.Observation{IdentityID: names[i%ids], KeyID: "key_" + names[i%ids][4:],
			Action: ops[(i/ids)%len(ops)], Class: "read", Decision: "allow", Code: "allowed", ClientIP: fmt.Sprintf("10.0.%d.7", i%ids%200),
			UserAgent: "python-requests/2.31.0", Completed: i%2 == 1, BytesOut: 4096, Status: 200}
	}
	obs := func(i int) gate.Observation {
		o := ring[i%len(ring)]
		o.Time = t0.Add(time.Duration(i) * 50 * time.Millisecond)
		return o
	}
	// Warm up: every identity learned.
	for i := range 200 * ids {
		o := obs(i)
		e.observe(&o, who{Name: "agent"})
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 200 * ids
	for b.Loop() {
		o := obs(i)
		e.observe(&o, who{Name: "agent"})
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "observations/s")
}
