package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/config"
	"warden/internal/server"
	"warden/internal/wardentest"
)

// A configured webhook sink receives the server's audit events (here the
// admin change that created an identity), and its metrics are on /metrics.
func TestServerStreamsAuditToSink(t *testing.T) {
	var (
		mu    sync.Mutex
		kinds = map[string]int{}
		body  []string
	)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e struct{ Kind, Action string }
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("not an event: %q", sc.Text())
			}
			mu.Lock()
			kinds[e.Kind+" "+e.Action]++
			body = append(body, sc.Text())
			mu.Unlock()
		}
	}))
	defer rec.Close()
	srv := wardentest.StartServer(t, wardentest.ServerOptions{Configure: func(c *config.Config) {
		c.AuditSinks = []config.AuditSink{{Name: "siem", Type: "webhook", URL: rec.URL, FlushInterval: 20 * time.Millisecond}}
	}})
	ctx := context.Background()
	if _, err := srv.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "sink-test-agent", Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := 0
		for k, v := range kinds {
			if strings.HasPrefix(k, "admin.change identity.") {
				n += v
			}
		}
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the identity's admin change never reached the sink; got %v", kinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The cursor moves just after the receiver answered: poll for it.
	var list apitype.AuditSinkList
	for {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/audit/sinks", nil)
		req.Header.Set("Authorization", "Bearer "+srv.RootToken)
		sresp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		list = apitype.AuditSinkList{}
		err = json.NewDecoder(sresp.Body).Decode(&list)
		sresp.Body.Close()
		if err != nil || sresp.StatusCode != 200 || len(list.Sinks) != 1 || list.Sinks[0].Name != "siem" || list.Sinks[0].Type != "webhook" {
			t.Fatalf("GET /v1/audit/sinks = %d %+v, %v", sresp.StatusCode, list, err)
		}
		if list.Sinks[0].Cursor > 0 && list.Sinks[0].LastDelivery != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink's status never showed a delivery: %+v", list)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := json.Marshal(list); strings.Contains(string(b), rec.URL) {
		t.Fatalf("the sink status shows the receiver's URL: %s", b)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	for _, name := range []string{`warden_audit_sink_lag_events{sink="siem"}`, `warden_audit_sink_delivered_total{sink="siem"}`} {
		if !strings.Contains(string(m), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The writer's own counters: the admin change above was committed.
	for _, name := range []string{"warden_audit_events_total", "warden_audit_commits_total", "warden_audit_commit_seconds_total"} {
		var v float64
		for _, line := range strings.Split(string(m), "\n") {
			if n, val, ok := strings.Cut(line, " "); ok && n == name {
				v, _ = strconv.ParseFloat(val, 64)
			}
		}
		if v <= 0 {
			t.Errorf("/metrics: %s is %v, want > 0", name, v)
		}
	}
}

// A sink whose secret_env names an unset variable stops the start: it must
// not send unsigned batches, and the error names the variable, not a value.
func TestServerRefusesSinkWithoutSecret(t *testing.T) {
	cfg := config.Defaults()
	cfg.Data = t.TempDir()
	cfg.RootToken = warden.NewSecret(warden.NewKey(warden.KeyPrefixAdmin))
	cfg.AuditSinks = []config.AuditSink{{Name: "siem", Type: "webhook", URL: "https://siem.example.com", SecretEnv: "WARDEN_TEST_UNSET_SECRET"}}
	env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString([]byte(warden.RandomString(32)))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = server.Run(ctx, server.Options{Config: cfg, Listener: ln, Getenv: func(k string) string { return env[k] }})
	if err == nil || !strings.Contains(err.Error(), "WARDEN_TEST_UNSET_SECRET") {
		t.Fatalf("Run = %v, want a refusal naming the unset variable", err)
	}
}
