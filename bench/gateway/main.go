// Command gateway benchmarks Warden's governed proxy against a bare Go
// reverse proxy, in one run on one machine: an upstream, a bare
// httputil.ReverseProxy in front of it, and Warden with full governance
// (access token, a policy with a CEL condition, credential injection from
// the vault, and the durable audit log on its default SQLite store).
//
//	go run ./bench/gateway [-duration 5s] [-rates 500,1000,2000] [-conns 32]
//
// For each fixed rate it reports the latency added over a direct call
// (p50/p99) and, for Warden, over the bare proxy (the target: at most
// 0.3 ms at p99 at 1,000 requests/s); at saturation the throughput of each
// path. The bare proxy pools upstream connections like Warden does, so
// neither pays for dialing.
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warden"
	"warden/apitype"
	"warden/bench/internal/latency"
	"warden/bench/internal/measure"
	"warden/client"
	"warden/internal/config"
	"warden/internal/server"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "duration of each measurement")
	rates := flag.String("rates", "500,1000,2000", "fixed request rates to measure (requests/s)")
	conns := flag.Int("conns", 32, "concurrent connections at saturation")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to FILE")
	traceFile := flag.String("trace", "", "write an execution trace of Warden's fixed-rate measurements to FILE (go tool trace)")
	memprofile := flag.String("memprofile", "", "write an allocation profile (allocs since start) to FILE at the end")
	satOnly := flag.String("saturate-only", "", "measure only this path at saturation (direct, bare, warden): for profiling one path")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer func() {
			f, err := os.Create(*memprofile)
			if err != nil {
				log.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				log.Fatal(err)
			}
		}()
	}

	upstream := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer bench-upstream-token" && r.Header.Get("X-Bare") == "" {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"42","title":"hello","state":"open"}`)
	}))
	target, _ := url.Parse(upstream)
	bare := serve(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("X-Bare", "1")
		},
		// The same pooling as Warden's upstream transport
		// (internal/proxy): the default keeps only 2 idle connections
		// per host and would redial under load.
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second},
	})

	wardenURL, token := startWarden(upstream)

	paths := []struct {
		name string
		url  string
		auth string
	}{
		{"direct", upstream + "/items/42", "direct"},
		{"bare proxy", bare + "/items/42", ""},
		{"warden", wardenURL + "/proxy/svc/items/42", "Bearer " + token},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}}
	// Sanity: every path answers 200.
	for _, p := range paths {
		if st := get(hc, p.url, p.auth); st != 200 {
			log.Fatalf("%s answered %d", p.name, st)
		}
	}

	if *satOnly != "" {
		for _, p := range paths {
			if strings.HasPrefix(p.name, *satOnly) {
				before := measure.ReadAudit(wardenURL)
				rps, lat, errs, cpu := saturate(hc, p.url, p.auth, *conns, *duration)
				fmt.Printf("%s: %.0f req/s, p50 %s, p99 %s, %s CPU per request, %d errors\n", p.name, rps, latency.US(latency.Pct(lat, .5)), latency.US(latency.Pct(lat, .99)), latency.US(cpu), errs)
				if p.name == "warden" {
					fmt.Println(measure.ReadAudit(wardenURL).Since(before, *duration))
				}
				return
			}
		}
		log.Fatalf("no path %q", *satOnly)
	}
	fmt.Printf("# gateway benchmark: %d CPUs, %s per point\n\n", numCPU(), *duration)
	fmt.Println("| rate (req/s) | path | p50 | p99 | added p50 | added p99 | over bare p50 | over bare p99 | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(rs))
		if err != nil || rate <= 0 {
			log.Fatalf("bad rate %q", rs)
		}
		var base, bareLat [2]time.Duration
		for _, p := range paths {
			tracing := *traceFile != "" && p.name == "warden" && startTrace(*traceFile)
			lat, errs := fixedRate(hc, p.url, p.auth, rate, *duration)
			if tracing {
				trace.Stop()
			}
			p50, p99 := latency.Pct(lat, 0.50), latency.Pct(lat, 0.99)
			added, over := "- | -", "- | -"
			switch p.name {
			case "direct":
				base = [2]time.Duration{p50, p99}
			case "bare proxy":
				bareLat = [2]time.Duration{p50, p99}
				added = fmt.Sprintf("%s | %s", latency.US(p50-base[0]), latency.US(p99-base[1]))
			default:
				added = fmt.Sprintf("%s | %s", latency.US(p50-base[0]), latency.US(p99-base[1]))
				over = fmt.Sprintf("%s | %s", latency.US(p50-bareLat[0]), latency.US(p99-bareLat[1]))
			}
			fmt.Printf("| %d | %s | %s | %s | %s | %s | %d |\n", rate, p.name, latency.US(p50), latency.US(p99), added, over, errs)
		}
	}
	fmt.Println()
	fmt.Println("| saturation | path | req/s | p50 | p99 | CPU per request (whole process) | errors |")
	fmt.Println("|---|---|---|---|---|---|---|")
	var bareRPS float64
	var commits string
	for _, p := range paths {
		before := measure.ReadAudit(wardenURL)
		rps, lat, errs, cpu := saturate(hc, p.url, p.auth, *conns, *duration)
		if p.name == "warden" {
			commits = measure.ReadAudit(wardenURL).Since(before, *duration)
		}
		if p.name == "bare proxy" {
			bareRPS = rps
		}
		ratio := ""
		if p.name == "warden" && bareRPS > 0 {
			ratio = fmt.Sprintf(" (%.2fx bare)", rps/bareRPS)
		}
		fmt.Printf("| %d conns | %s | %.0f%s | %s | %s | %s | %d |\n", *conns, p.name, rps, ratio, latency.US(latency.Pct(lat, .5)), latency.US(latency.Pct(lat, .99)), latency.US(cpu), errs)
	}
	fmt.Println()
	fmt.Println(commits)
}

// traceOut is the trace file (its first fixed rate only).
var traceOut *os.File

func startTrace(name string) bool {
	if traceOut != nil {
		return false
	}
	f, err := os.Create(name)
	if err != nil {
		log.Fatal(err)
	}
	traceOut = f
	if err := trace.Start(f); err != nil {
		log.Fatal(err)
	}
	return true
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.Serve(ln, h) }()
	return "http://" + ln.Addr().String()
}

// startWarden runs a full server on a temp SQLite data dir and sets up an
// identity, a key, an access token, a connector to the upstream, its
// credential and a policy whose rule carries a CEL condition.
func startWarden(upstream string) (string, string) {
	dir, err := os.MkdirTemp("", "warden-bench-")
	if err != nil {
		log.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Data = dir
	cfg.LogLevel = "error"
	root := warden.NewKey(warden.KeyPrefixAdmin)
	cfg.RootToken = warden.NewSecret(root)
	key := make([]byte, 32)
	copy(key, warden.RandomString(32))
	env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(key)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ready := make(chan string, 1)
	server.TuneGC(os.Getenv) // as `warden serve` does
	go func() {
		err := server.Run(context.Background(), server.Options{Config: cfg, Getenv: func(k string) string { return env[k] }, Listener: ln, Ready: func(a string) { ready <- a }})
		log.Fatalf("warden stopped: %v", err)
	}()
	addr := "http://" + <-ready
	ctx := context.Background()
	c := client.New(addr, root)
	must(c.CreateIdentity(ctx, apitype.CreateIdentity{Name: "bench-agent", Type: "ai_agent", Owner: "bench@example.com", Labels: map[string]string{"team": "bench"}}))
	k := must(c.CreateKey(ctx, "bench-agent", 0))
	doc := `apiVersion: warden/v1
kind: Connector
name: svc
base_url: ` + upstream + `
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: items.get, method: GET, path: "/items/{id}", class: read}
`
	put(addr, root, "/v1/connectors/svc", "application/yaml", doc)
	put(addr, root, "/v1/credentials", "application/json", `{"name":"svc-token","type":"bearer","connector":"svc","secret":{"token":"bench-upstream-token"}}`)
	must(c.PutPolicy(ctx, "bench", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{selector: {labels: {team: bench}}}]
rules:
  - id: read-items
    effect: allow
    actions: ["svc:items.get"]
    when: 'resource.id.size() < 16 && identity.labels.team == "bench"'
`), "application/yaml"))
	tok := must(client.New(addr, "").Token(ctx, "", k.Key))
	return addr, tok.AccessToken
}

func put(addr, token, path, ctype, body string) {
	method := "PUT"
	if path == "/v1/credentials" {
		method = "POST"
	}
	req, _ := http.NewRequest(method, addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		log.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

func get(hc *http.Client, u, auth string) int {
	req, _ := http.NewRequest("GET", u, nil)
	switch auth {
	case "":
	case "direct":
		req.Header.Set("X-Bare", "1") // the upstream's own check, skipped for the direct baseline
	default:
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// fixedRate sends requests on a fixed schedule (open loop: a slow answer
// does not delay the next request) and records each latency.
func fixedRate(hc *http.Client, u, auth string, rate int, d time.Duration) ([]time.Duration, int64) {
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t := time.Now()
			if get(hc, u, auth) != 200 {
				errs.Add(1)
			}
			lat[i] = time.Since(t)
		}(i)
	}
	wg.Wait()
	return lat, errs.Load()
}

// saturate runs conns closed-loop workers and reports requests/s.
// saturate also reports the process's CPU time per request: load
// generator, upstream and the path under test all run in this process, so
// the difference between two paths is what the second one costs more.
func saturate(hc *http.Client, u, auth string, conns int, d time.Duration) (float64, []time.Duration, int64, time.Duration) {
	cpu0 := measure.CPUTime()
	var mu sync.Mutex
	var all []time.Duration
	var errs, count atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				if get(hc, u, auth) != 200 {
					errs.Add(1)
				}
				mine = append(mine, time.Since(t))
				count.Add(1)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds(), all, errs.Load(), (measure.CPUTime() - cpu0) / time.Duration(max(count.Load(), 1))
}
