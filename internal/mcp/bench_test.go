package mcp_test

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/internal/server"
	"warden/internal/wardentest"
)

var benchRate = flag.Int("mcp.rate", 100, "BenchmarkToolCall: calls/s of each path in the fixed-rate run")

// benchPath is one way to perform the benchmark's operation.
type benchPath struct {
	name string
	call func() error
}

// BenchmarkToolCall measures, in one run against one server (SQLite, a
// durable "decided" audit record per governed call), the same operations
// through:
//
//   - execute: POST /v1/execute (the HTTP connector's contacts.get)
//   - mcp-http-tool: tools/call crm__contacts.get through /mcp
//   - upstream-direct: the fake upstream MCP server's list_issues, called
//     with the SDK client directly (no Warden)
//   - mcp-fronted: tools/call gh-mcp__list_issues through /mcp
//
// One sub-benchmark per path, back to back, reports its p50 and p99 (µs),
// the process CPU time per call (cpu_us/op: every goroutine of the run,
// the audit writer, the upstreams and the clients included, so it does not
// move with other processes' load the way latency does), GC cycles per
// 1,000 calls, and B/op and allocs/op. Two more run the four paths
// interleaved, so a noisy machine weighs on them alike, and report the
// added latency at p50 and p99 (p99 of one path minus p99 of the other):
// MCP over /v1/execute, fronted over direct.
//
//   - added/back-to-back: one call of each path per round, in rotating
//     order, one at a time.
//   - added/fixed-rate-N: each path at N calls/s (-mcp.rate, default 100:
//     400 calls/s in all, about a sixth of this 2-core machine's CPU),
//     staggered, open loop: every call starts on a goroutine of its own at
//     its scheduled time, whatever the calls before it are doing. Latency
//     counts from the call's actual start, as bench/gateway does; how late
//     the load generator (in this same process) started calls is reported
//     as sched_late_p99_us, so a run where it could not keep up shows.
//
// b.N is calls per path; ns/op of the added runs is per round of four. Run
// with -args -mcp.rate N for another rate.
func BenchmarkToolCall(b *testing.B) {
	// The collector's target `warden serve` runs with (GOGC unless set).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	server.TuneGC(os.Getenv)
	s := wardentest.StartServer(b, wardentest.ServerOptions{})
	u := newCRM(b)
	up := newFakeUpstream(b, "bench-token")
	mustDo(b, s, "PUT", "/v1/connectors/crm", "application/yaml", `apiVersion: warden/v1
kind: Connector
base_url: `+u.URL+`
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: contacts.get, method: GET, path: "/contacts/{id}", class: read}
`, 201)
	mustDo(b, s, "POST", "/v1/credentials", "application/json", `{"name":"crm-token","type":"bearer","connector":"crm","secret":{"token":"crm-upstream-secret"}}`, 201)
	mustDo(b, s, "POST", "/v1/credentials", "application/json", `{"name":"gh-token","type":"bearer","connector":"gh-mcp","secret":{"token":"bench-token"}}`, 201)
	mustDo(b, s, "PUT", "/v1/connectors/gh-mcp", "application/yaml", "apiVersion: warden/v1\nkind: Connector\ntype: mcp\nallow_private_network: true\nauth: {type: bearer}\nmcp: {url: \""+up.URL+"\"}\n", 201)
	key := newAgent(b, s, "bench-bot")
	putPolicy(b, s, "bench-bot", `apiVersion: warden/v1
kind: Policy
subjects: [{identity: bench-bot}]
rules: [{id: all, effect: allow, actions: ["crm:contacts.get", "gh-mcp:list_issues"]}]
`)
	// Every client pools its connections (http.DefaultTransport keeps two
	// idle per host: concurrent calls would dial), so no path pays for
	// dialing but Warden's own doing.
	pooled := http.DefaultTransport.(*http.Transport).Clone()
	pooled.MaxIdleConnsPerHost = 64
	b.Cleanup(pooled.CloseIdleConnections)
	connect := func(url, token string) *sdk.ClientSession {
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{
			Endpoint: url, HTTPClient: &http.Client{Transport: &bearer{token: token, base: pooled}}, MaxRetries: -1,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cs.Close() })
		return cs
	}
	cs := connect(s.URL+"/mcp", key)
	direct := connect(up.URL, "bench-token")
	hc := &http.Client{Transport: pooled}
	paths := []benchPath{
		{"execute", func() error {
			req, _ := http.NewRequest("POST", s.URL+"/v1/execute", strings.NewReader(`{"connector":"crm","operation":"contacts.get","resource":{"id":"42"}}`))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("execute: %d", resp.StatusCode)
			}
			return nil
		}},
		{"mcp-http-tool", func() error {
			r, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "crm__contacts.get", Arguments: map[string]any{"id": "42"}})
			if err == nil && r.IsError {
				return fmt.Errorf("tool error: %s", text(r))
			}
			return err
		}},
		{"upstream-direct", func() error {
			_, err := direct.CallTool(ctx, &sdk.CallToolParams{Name: "list_issues", Arguments: map[string]any{"repo": "acme/app", "title": ""}})
			return err
		}},
		{"mcp-fronted", func() error {
			r, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "gh-mcp__list_issues", Arguments: map[string]any{"repo": "acme/app", "title": ""}})
			if err == nil && r.IsError {
				return fmt.Errorf("tool error: %s", text(r))
			}
			return err
		}},
	}
	// Warm up: sessions, tool lists, pooled connections, caches.
	for range 50 {
		for _, p := range paths {
			if err := p.call(); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
		}
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			var cpu0 time.Duration
			var ms0 runtime.MemStats
			for b.Loop() {
				if len(lat) == 0 {
					runtime.ReadMemStats(&ms0)
					cpu0 = cpuTime()
				}
				t0 := time.Now()
				if err := p.call(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			var ms1 runtime.MemStats
			runtime.ReadMemStats(&ms1)
			cpu := cpuTime() - cpu0
			n := float64(len(lat))
			b.ReportMetric(us(pct(lat, 0.50)), "p50_us")
			b.ReportMetric(us(pct(lat, 0.99)), "p99_us")
			b.ReportMetric(us(cpu)/n, "cpu_us/op")
			b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)*1000/n, "GCs/kop")
		})
	}
	b.Run("added", func(b *testing.B) {
		b.Run("back-to-back", func(b *testing.B) {
			lat := make([][]time.Duration, len(paths))
			round := 0
			for b.Loop() {
				for j := range paths {
					k := (round + j) % len(paths)
					t0 := time.Now()
					if err := paths[k].call(); err != nil {
						b.Fatalf("%s: %v", paths[k].name, err)
					}
					lat[k] = append(lat[k], time.Since(t0))
				}
				round++
			}
			reportAdded(b, paths, lat)
		})
		b.Run(fmt.Sprintf("fixed-rate-%d", *benchRate), func(b *testing.B) {
			interval := time.Second / time.Duration(*benchRate*len(paths))
			lat := make([][]time.Duration, len(paths))
			for k := range lat {
				lat[k] = make([]time.Duration, 0, b.N)
			}
			late := make([]time.Duration, 0, b.N*len(paths))
			var (
				mu   sync.Mutex
				wg   sync.WaitGroup
				errs []error
				i    int
			)
			start := time.Now()
			for b.Loop() {
				for k := range paths {
					at := start.Add(time.Duration(i) * interval)
					i++
					time.Sleep(time.Until(at))
					wg.Go(func() {
						t0 := time.Now()
						err := paths[k].call()
						d := time.Since(t0)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							errs = append(errs, fmt.Errorf("%s: %w", paths[k].name, err))
						}
						lat[k] = append(lat[k], d)
						late = append(late, t0.Sub(at))
					})
				}
			}
			wg.Wait()
			if len(errs) > 0 {
				b.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
			}
			reportAdded(b, paths, lat)
			b.ReportMetric(us(pct(late, 0.99)), "sched_late_p99_us")
		})
	})
}

// reportAdded reports each path's p99 and the latency MCP adds over
// /v1/execute and a fronted call over the upstream called directly.
func reportAdded(b *testing.B, paths []benchPath, lat [][]time.Duration) {
	byName := map[string][]time.Duration{}
	var sum strings.Builder
	for k, p := range paths {
		byName[p.name] = lat[k]
		fmt.Fprintf(&sum, "  %-16s p50 %6.0f µs  p99 %6.0f µs  (%d calls)\n", p.name, us(pct(lat[k], 0.50)), us(pct(lat[k], 0.99)), len(lat[k]))
	}
	b.Logf("\n%s", sum.String())
	for _, q := range []struct {
		q    float64
		name string
	}{{0.50, "p50"}, {0.99, "p99"}} {
		b.ReportMetric(us(pct(byName["mcp-http-tool"], q.q)-pct(byName["execute"], q.q)), "mcp_added_"+q.name+"_us")
		b.ReportMetric(us(pct(byName["mcp-fronted"], q.q)-pct(byName["upstream-direct"], q.q)), "fronted_added_"+q.name+"_us")
	}
}

// pct is the q-quantile of l (nearest rank); l is not modified.
func pct(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// cpuTime is the CPU time (user and system) of the whole process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
