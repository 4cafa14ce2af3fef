package audit_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// benchAppend measures durable, chained appends from many concurrent
// writers (the gateway's hot path): events/s and the p99 wait of Append.
func benchAppend(b *testing.B, newStore func(testing.TB) *store.Store) {
	for _, writers := range []int{64, 128} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchAppendN(b, newStore(b), writers) })
	}
}

func benchAppendN(b *testing.B, st *store.Store, writers int) {
	e := newEnv(b, st)
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	b.ReportAllocs()
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		ev := decided(1)
		for pb.Next() {
			t0 := time.Now()
			if _, err := e.log.Append(ctx, ev); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lats = append(lats, local...)
		mu.Unlock()
	})
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	slices.Sort(lats)
	if len(lats) > 0 {
		b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(lats)), "cpu_us/event")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99_ms")
	}
	if s := e.log.Stats(); s.Batches > 0 {
		b.ReportMetric(float64(s.Events)/float64(s.Batches), "events/batch")
		b.ReportMetric(float64(s.Commit.Microseconds())/float64(s.Batches)/1000, "ms/batch")
	}
}

func BenchmarkAppendSQLite(b *testing.B)   { benchAppend(b, wardentest.SQLite) }
func BenchmarkAppendPostgres(b *testing.B) { benchAppend(b, wardentest.Postgres) }

// BenchmarkVerifyChain is verify's per-event work (canonical encoding,
// SHA-256, link and checkpoint checks) on one core, without I/O.
func BenchmarkVerifyChain(b *testing.B) {
	const n = 100000
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = decided(i)
		evs[i].ID = "evt_" + strconv.Itoa(i)
		evs[i].Time = time.Unix(1700000000, int64(i)*1000).UTC()
	}
	audit.Chain(evs)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		if p := audit.VerifyEvents(evs, nil); p != nil {
			b.Fatal(p)
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "events/s")
	// One goroutine: CPU time is one core's time, whatever else runs on
	// the machine.
	b.ReportMetric(float64(b.N*n)/(cpuTime()-cpu0).Seconds(), "events/cpu_s")
}

// benchEvents is the log size for the store benchmarks
// (WARDEN_AUDIT_BENCH_EVENTS, default 1,000,000).
func benchEvents() int {
	if v, err := strconv.Atoi(os.Getenv("WARDEN_AUDIT_BENCH_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 1000000
}

// fill writes n events for 1000 identities in large batches.
func fill(b *testing.B, e *env, n int) {
	const batch = 5000
	for done := 0; done < n; done += batch {
		err := e.st.AppendAudit(ctx, 0, func(head audit.Head, _ []audit.PendingChange) (audit.Batch, error) {
			evs := make([]audit.Event, min(batch, n-done))
			ptrs := make([]*audit.Event, len(evs))
			prev, seq := head.Hash, head.Seq
			var buf []byte
			for i := range evs {
				evs[i] = decided(i)
				seq++
				evs[i].ID, evs[i].Time = fmt.Sprintf("evt_%d", seq), time.Unix(1700000000+seq, 0).UTC()
				evs[i].Identity = fmt.Sprintf("nhi_%04d", seq%1000)
				evs[i].Seq, evs[i].V, evs[i].PrevHash = seq, audit.Version1, prev
				evs[i].Hash, buf, _ = audit.ComputeHash(buf, &evs[i])
				prev = evs[i].Hash
				ptrs[i] = &evs[i]
			}
			return audit.Batch{Events: ptrs}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// bigLog builds one large log on engine, owned by the parent benchmark b
// (its sub-benchmarks run several times; the log must outlive them).
func bigLog(b *testing.B, engine string) *env {
	var st *store.Store
	if engine == "postgres" {
		st = wardentest.Postgres(b)
	} else {
		st = wardentest.SQLite(b)
	}
	e := newEnv(b, st)
	n := benchEvents()
	t0 := time.Now()
	fill(b, e, n)
	b.Logf("%s: built a log of %d events in %s", engine, n, time.Since(t0).Round(time.Millisecond))
	return e
}

// BenchmarkLargeLog reads a large log (size: WARDEN_AUDIT_BENCH_EVENTS,
// 1000 identities): the newest 100 events of one identity, and the whole
// Verify with every read.
func BenchmarkLargeLog(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		if engine == "postgres" && os.Getenv(wardentest.PostgresDSNEnv) == "" {
			continue
		}
		e := bigLog(b, engine)
		b.Run(engine+"/query_last100_identity", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				evs, _, err := e.log.Query(ctx, audit.Filter{Identity: fmt.Sprintf("nhi_%04d", i%1000), Limit: 100}, "")
				if err != nil || len(evs) != 100 {
					b.Fatal(err, len(evs))
				}
			}
		})
		b.Run(engine+"/verify", func(b *testing.B) {
			start, cpu0 := time.Now(), cpuTime()
			var events int64
			for i := 0; i < b.N; i++ {
				rep, err := audit.Verify(ctx, e.st, audit.VerifyOptions{PublicKey: e.keys.PublicKey})
				if err != nil || !rep.OK {
					b.Fatal(err, rep.Problem)
				}
				events += rep.Events
			}
			b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(events)/(cpuTime()-cpu0).Seconds(), "events/cpu_s")
		})
	}
}

// cpuTime is the process's user+system CPU time: with wall time it tells
// a benchmark's cost apart from time lost to other load on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchAppendOne is the idle gateway's case: one writer, each Append its
// own transaction and sync. It reports the wait's p50 and p99.
func benchAppendOne(b *testing.B, st *store.Store) {
	e := newEnv(b, st)
	lats := make([]time.Duration, 0, b.N)
	ev := decided(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := e.log.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
		lats = append(lats, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lats)
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99_us")
}

func BenchmarkAppendOneSQLite(b *testing.B)   { benchAppendOne(b, wardentest.SQLite(b)) }
func BenchmarkAppendOnePostgres(b *testing.B) { benchAppendOne(b, wardentest.Postgres(b)) }
