// Command pgwire benchmarks Warden's PostgreSQL wire listener against
// direct connections to the same PostgreSQL, in one run on one machine,
// with pgbench's select-only load (-S): "SELECT abalance FROM accounts
// WHERE aid = $1" with a random aid, over pgx's default extended protocol
// (statements prepared once per connection, then Bind/Execute).
//
// Through Warden every statement is analysed (cached by text), decided by
// the policy engine (an allow rule with a CEL condition on the tables),
// written to the durable audit log (default SQLite store) before it is
// forwarded, and completed in the audit log with its row count; the
// session runs as a leased postgres_dynamic role.
//
//	go run ./bench/pgwire [-dsn postgres://...] [-duration 5s] [-rates 200,500,1000] [-conns 8] [-saturation 8,32]
//
// For each fixed rate it reports per-query latency of both paths and the
// latency Warden adds (p50/p99); at saturation, for each connection count
// (both paths at the same count, as pgbench users compare client counts),
// each path's throughput, their ratio, this process's CPU time and
// allocations per query (the pgx clients, plus Warden on its path: the
// difference between the paths is what Warden costs, which stays
// meaningful on a machine shared with other work, where throughput and
// latency do not), and how Warden's audit writer grouped the events into
// commits.
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"warden"
	"warden/apitype"
	"warden/bench/internal/latency"
	"warden/bench/internal/measure"
	"warden/client"
	"warden/internal/config"
	"warden/internal/server"
)

const accounts = 100_000

func main() {
	dsn := flag.String("dsn", envOr("WARDEN_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "superuser DSN of the PostgreSQL to measure")
	duration := flag.Duration("duration", 5*time.Second, "duration of each measurement")
	rates := flag.String("rates", "200,500,1000", "fixed query rates to measure (queries/s)")
	conns := flag.Int("conns", 8, "connections per path at the fixed rates")
	satConns := flag.String("saturation", "8,32", "connection counts per path to measure saturation at (empty: none)")
	pathList := flag.String("paths", "direct,warden", "paths to measure (a profile of Warden alone: -paths warden)")
	dataParent := flag.String("data", "", "directory to create Warden's data dir in (default the system temp dir; a tmpfs such as /dev/shm takes the audit log's fsync out of the measurement)")
	pgStore := flag.Bool("pgstore", false, "keep Warden's own data (audit log included) in a fresh schema of the same PostgreSQL instead of SQLite")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (Warden runs in this process) to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file (go tool pprof -sample_index=alloc_space)")
	flag.Parse()
	if *memProfile != "" {
		defer func() {
			f := must(os.Create(*memProfile))
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				log.Fatal(err)
			}
		}()
	}
	if *cpuProfile != "" {
		f := must(os.Create(*cpuProfile))
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()

	schema := "bench_" + strings.ToLower(warden.RandomString(8))
	admin := must(pgx.Connect(ctx, *dsn))
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84))",
		fmt.Sprintf("INSERT INTO %s.accounts SELECT i, 1, 0, '' FROM generate_series(1, %d) i", schema, accounts),
		"ANALYZE " + schema + ".accounts",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			log.Fatalf("%s: %v", q, err)
		}
	}
	defer func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") }()

	dir := must(os.MkdirTemp(*dataParent, "warden-bench-pgwire-"))
	defer func() { _ = os.RemoveAll(dir) }()
	store := ""
	if *pgStore {
		if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema+"_warden"); err != nil {
			log.Fatal(err)
		}
		defer func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+"_warden CASCADE") }()
		u := must(url.Parse(*dsn))
		q := u.Query()
		q.Set("search_path", schema+"_warden")
		u.RawQuery = q.Encode()
		store = u.String()
	}
	pgAddr, httpAddr, root, key := startWarden(*dsn, schema, dir, store)
	defer func() {
		// Deleting the credential drops the leased roles.
		_ = client.New(httpAddr, root).Do(context.Background(), http.MethodDelete, "/v1/credentials/bench-db", nil, nil)
	}()

	through := fmt.Sprintf("postgres://bench-agent:%s@%s/bench-db?sslmode=disable", url.PathEscape(key), pgAddr)
	query := "SELECT abalance FROM " + schema + ".accounts WHERE aid = $1"
	type path struct {
		name, dsn string
		conns     []*pgx.Conn
	}
	var paths []*path
	for _, p := range []*path{{name: "direct", dsn: *dsn}, {name: "warden", dsn: through}} {
		if slices.Contains(strings.Split(*pathList, ","), p.name) {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		log.Fatalf("-paths %q names neither direct nor warden", *pathList)
	}
	// connsOf returns n connections of p, dialing (and warming up: every
	// connection answers and prepares) those it does not have yet.
	connsOf := func(p *path, n int) []*pgx.Conn {
		for len(p.conns) < n {
			c := must(pgx.Connect(ctx, p.dsn))
			for range 20 {
				var b int
				if err := c.QueryRow(ctx, query, 1+rand.IntN(accounts)).Scan(&b); err != nil {
					log.Fatalf("%s: %v", p.name, err)
				}
			}
			p.conns = append(p.conns, c)
		}
		return p.conns[:n]
	}
	defer func() {
		for _, p := range paths {
			for _, c := range p.conns {
				c.Close(ctx)
			}
		}
	}()

	fmt.Printf("# pgwire benchmark: %d CPUs, %s per point, pgbench -S query\n\n", runtime.NumCPU(), *duration)
	if strings.TrimSpace(*rates) != "" {
		fmt.Printf("%d connections per path:\n\n", *conns)
		fmt.Println("| rate (q/s) | path | p50 | p99 | added p50 | added p99 | errors |")
		fmt.Println("|---|---|---|---|---|---|---|")
		for _, rs := range strings.Split(*rates, ",") {
			rate, err := strconv.Atoi(strings.TrimSpace(rs))
			if err != nil || rate <= 0 {
				log.Fatalf("bad rate %q", rs)
			}
			var base []time.Duration
			for _, p := range paths {
				lat, errs := fixedRate(connsOf(p, *conns), query, rate, *duration)
				added50, added99 := "", ""
				if p.name == "direct" {
					base = lat
				} else if base != nil {
					added50, added99 = latency.US(latency.Pct(lat, .5)-latency.Pct(base, .5)), latency.US(latency.Pct(lat, .99)-latency.Pct(base, .99))
				}
				fmt.Printf("| %d | %s | %s | %s | %s | %s | %d |\n", rate, p.name, latency.US(latency.Pct(lat, .5)), latency.US(latency.Pct(lat, .99)), added50, added99, errs)
			}
		}
		fmt.Println()
	}
	if strings.TrimSpace(*satConns) == "" {
		return
	}
	fmt.Println("| saturation | path | queries/s | p50 | p99 | CPU/query | allocs/query | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	var notes []string
	for _, ns := range strings.Split(*satConns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(ns))
		if err != nil || n <= 0 {
			log.Fatalf("bad connection count %q", ns)
		}
		var direct float64
		for _, p := range paths {
			// One path's connections at a time: both at 64 would pass
			// PostgreSQL's default max_connections (100).
			for _, o := range paths {
				if o != p {
					for _, c := range o.conns {
						c.Close(ctx)
					}
					o.conns = nil
				}
			}
			cs := connsOf(p, n)
			before := measure.ReadAudit(httpAddr)
			u0 := usageNow()
			q, lat, errs := saturate(cs, query, *duration)
			used := usageNow().since(u0, q*duration.Seconds())
			ratio := ""
			switch {
			case p.name == "direct":
				direct = q
			case direct > 0:
				ratio = fmt.Sprintf(" (%.2fx direct)", q/direct)
			}
			if p.name == "warden" {
				notes = append(notes, fmt.Sprintf("%d conns: %s", n, measure.ReadAudit(httpAddr).Since(before, *duration)))
			}
			fmt.Printf("| %d conns | %s | %.0f%s | %s | %s | %s | %d |\n", n, p.name, q, ratio, latency.US(latency.Pct(lat, .5)), latency.US(latency.Pct(lat, .99)), used, errs)
		}
	}
	fmt.Println()
	for _, n := range notes {
		fmt.Println(n)
	}
}

// usage is this process's CPU time and heap allocations at one moment.
type usage struct {
	cpu     time.Duration
	objects uint64
}

func usageNow() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{cpu: measure.CPUTime(), objects: ms.Mallocs}
}

// since formats the CPU time and allocations per query between u0 and u
// ("| 123 µs | 45 |").
func (u usage) since(u0 usage, queries float64) string {
	if queries <= 0 {
		return "- | -"
	}
	return fmt.Sprintf("%s | %.0f", latency.US(time.Duration(float64(u.cpu-u0.cpu)/queries)), float64(u.objects-u0.objects)/queries)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// fixedRate sends rate queries per second, spread over the connections
// (each connection one query at a time), and returns each query's latency.
func fixedRate(conns []*pgx.Conn, query string, rate int, d time.Duration) ([]time.Duration, int64) {
	ticks := make(chan struct{}, len(conns))
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for range ticks {
				t0 := time.Now()
				var b int
				if err := c.QueryRow(context.Background(), query, 1+rand.IntN(accounts)).Scan(&b); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	interval := time.Second / time.Duration(rate)
	end := time.Now().Add(d)
	next := time.Now()
	for time.Now().Before(end) {
		next = next.Add(interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		select {
		case ticks <- struct{}{}:
		default:
			errs.Add(1) // every connection busy: the path cannot keep this rate
		}
	}
	close(ticks)
	wg.Wait()
	return lat, errs.Load()
}

// saturate runs every connection flat out.
func saturate(conns []*pgx.Conn, query string, d time.Duration) (float64, []time.Duration, int64) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs atomic.Int64
		n    atomic.Int64
		wg   sync.WaitGroup
	)
	end := time.Now().Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				var b int
				if err := c.QueryRow(context.Background(), query, 1+rand.IntN(accounts)).Scan(&b); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds(), lat, errs.Load()
}

func startWarden(dsn, schema, dir, store string) (pgAddr, httpAddr, root, key string) {
	free := must(net.Listen("tcp", "127.0.0.1:0"))
	pgAddr = free.Addr().String()
	free.Close()
	cfg := config.Defaults()
	cfg.Data = dir
	cfg.Database = store
	cfg.LogLevel = "error"
	cfg.PostgresListen = pgAddr
	root = warden.NewKey(warden.KeyPrefixAdmin)
	cfg.RootToken = warden.NewSecret(root)
	mk := make([]byte, 32)
	copy(mk, warden.RandomString(32))
	env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(mk)}
	ln := must(net.Listen("tcp", "127.0.0.1:0"))
	ready := make(chan string, 1)
	server.TuneGC(os.Getenv) // as `warden serve` does
	go func() {
		err := server.Run(context.Background(), server.Options{Config: cfg, Getenv: func(k string) string { return env[k] }, Listener: ln, Ready: func(a string) { ready <- a }})
		log.Fatalf("warden stopped: %v", err)
	}()
	httpAddr = "http://" + <-ready
	ctx := context.Background()
	c := client.New(httpAddr, root)
	must(c.CreateIdentity(ctx, apitype.CreateIdentity{Name: "bench-agent", Type: "ai_agent", Owner: "bench@example.com"}))
	key = must(c.CreateKey(ctx, "bench-agent", 0)).Key
	u := must(url.Parse(dsn))
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	doc := fmt.Sprintf(`apiVersion: warden/v1
kind: Connector
name: bench-db
type: postgres
postgres: {host: %s, port: %s, database: %s, sslmode: disable}
`, u.Hostname(), port, strings.TrimPrefix(u.Path, "/"))
	must(c.PutConnector(ctx, "bench-db", []byte(doc), "application/yaml"))
	if err := c.Do(ctx, http.MethodPost, "/v1/credentials", apitype.CreateCredential{
		Name: "bench-db", Type: "postgres_dynamic", Connector: "bench-db", Secret: map[string]string{"admin_dsn": dsn},
		Config: map[string]any{"ttl": "1h", "grants": []any{"GRANT USAGE ON SCHEMA " + schema + " TO {{role}}", "GRANT SELECT ON ALL TABLES IN SCHEMA " + schema + " TO {{role}}"}},
	}, nil); err != nil {
		log.Fatal(err)
	}
	must(c.PutPolicy(ctx, "bench", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{identity: bench-agent}]
rules:
  - id: read-accounts
    effect: allow
    actions: ["bench-db:select"]
    when: 'resource.tables.all(t, t.endsWith(".accounts"))'
`), "application/yaml"))
	return pgAddr, httpAddr, root, key
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
