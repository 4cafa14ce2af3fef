package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/config"
	"warden/internal/wardentest"
)

// monitorFixture: a real server whose monitor learns after 5 calls, an
// upstream that counts what reaches it, and an agent allowed to send mail.
type monitorFixture struct {
	s     *wardentest.Server
	keys  map[string]string
	calls atomic.Int64
}

func newMonitorFixture(t *testing.T, responses map[string]string, agents ...string) *monitorFixture {
	t.Helper()
	return newMonitorFixtureOn(t, wardentest.ServerOptions{}, responses, agents...)
}

// monitorConfig: learn after 5 calls, spikes from 10 calls a minute.
func monitorConfig(responses map[string]string) func(*config.Config) {
	return func(c *config.Config) {
		c.Monitor.LearningCalls, c.Monitor.LearningPeriod, c.Monitor.SpikeFloor = 5, 0, 10
		c.Monitor.Responses = responses
	}
}

func newMonitorFixtureOn(t *testing.T, so wardentest.ServerOptions, responses map[string]string, agents ...string) *monitorFixture {
	t.Helper()
	f := &monitorFixture{keys: map[string]string{}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(up.Close)
	extra := so.Configure // applied after the monitor settings
	so.Configure = func(c *config.Config) {
		monitorConfig(responses)(c)
		if extra != nil {
			extra(c)
		}
	}
	f.s = wardentest.StartServer(t, so)
	root := f.s.Root
	for _, name := range agents {
		if _, err := root.CreateIdentity(ctx, apitype.CreateIdentity{Name: name, Type: "ai_agent", Owner: "alice@example.com", Labels: map[string]string{"team": "mail"}}); err != nil {
			t.Fatal(err)
		}
		k, err := root.CreateKey(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.keys[name] = k.Key
	}
	if st, _, _, b := call(t, f.s, "PUT", "/v1/connectors/mail", f.s.RootToken, "application/yaml", `apiVersion: warden/v1
kind: Connector
base_url: `+up.URL+`
allow_private_network: true
auth: {type: none}
operations:
  - {id: messages.send, method: POST, path: /messages, class: write}
  - {id: messages.list, method: GET, path: /messages, class: read}
`); st != 201 {
		t.Fatalf("connector: %d %s", st, b)
	}
	if _, err := root.PutPolicy(ctx, "mail", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{selector: {labels: {team: mail}}}]
rules:
  - {id: mail, effect: allow, actions: ["mail:*"]}
`), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *monitorFixture) do(t *testing.T, agent, method string) (int, http.Header, apitype.Problem) {
	t.Helper()
	st, h, p, _ := call(t, f.s, method, "/proxy/mail/messages", f.keys[agent], "", "")
	return st, h, p
}

// waitFinding polls GET /v1/findings until one matches; the monitor works
// off the hot path, so a finding appears shortly after the call. The
// deadline only bounds a broken run; nothing is asserted about timing.
func (f *monitorFixture) waitFinding(t *testing.T, query, detector string) apitype.Finding {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list apitype.FindingList
		if err := f.s.Root.Do(ctx, "GET", "/v1/findings?"+query, nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, x := range list.Findings {
			if x.Detector == detector {
				return x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s finding for %q: %+v", detector, query, list.Findings)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunawayAgentSuspended(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRunaway(t, wardentest.ServerOptions{}) })
	t.Run("postgres", func(t *testing.T) { testRunaway(t, wardentest.ServerOptions{DSN: wardentest.PostgresDSN(t)}) })
}

func testRunaway(t *testing.T, so wardentest.ServerOptions) {
	f := newMonitorFixtureOn(t, so, map[string]string{"high": "suspend"}, "runaway")
	for range 5 { // learning: ordinary reads
		if st, _, p := f.do(t, "runaway", "GET"); st != 200 {
			t.Fatalf("read: %d %s", st, p.Code)
		}
	}
	// The loop: ten sends in a moment reach the spike floor.
	for i := range 10 {
		if st, _, p := f.do(t, "runaway", "POST"); st != 200 {
			t.Fatalf("send %d refused before any finding: %d %s", i, st, p.Code)
		}
	}
	fnd := f.waitFinding(t, "identity=runaway&detector=rate_spike", "rate_spike")
	if fnd.Severity != "high" || fnd.ActionTaken != "suspend" || fnd.IdentityName != "runaway" || fnd.ContainedAt == nil ||
		fnd.TimeToContainMS == nil || fnd.Status != "open" || !strings.Contains(fnd.Explanation, "mail:messages.send") {
		t.Fatalf("finding: %+v", fnd)
	}
	// Its next call is refused; nothing more reaches the upstream.
	before := f.calls.Load()
	st, _, p := f.do(t, "runaway", "POST")
	if st != 403 || p.Code != "identity_suspended" || f.calls.Load() != before {
		t.Fatalf("after suspension: %d %s", st, p.Code)
	}
	id, err := f.s.Root.GetIdentity(ctx, "runaway")
	if err != nil || id.Status != "suspended" || !strings.Contains(id.StatusReason, fnd.ID) {
		t.Fatalf("identity: %+v %v", id, err)
	}
	// The trail: the finding and the suspension are in the audit log.
	var events apitype.AuditList
	if err := f.s.Root.Do(ctx, "GET", "/v1/audit?identity=runaway&limit=200", nil, &events); err != nil {
		t.Fatal(err)
	}
	var sawFinding, sawSuspend bool
	for _, e := range events.Events {
		if e.Kind == "anomaly.finding" && e.Code == "rate_spike" && e.Decision == "suspend" {
			sawFinding = true
		}
		if e.Kind == "admin.change" && e.Action == "identity.suspend" && strings.Contains(e.Actor, "monitor") {
			sawSuspend = true
		}
	}
	if !sawFinding || !sawSuspend {
		t.Fatalf("audit: finding %v, suspension %v", sawFinding, sawSuspend)
	}
	// Time to detect and to contain are exported for the KPI reports.
	_, _, _, metrics := call(t, f.s, "GET", "/metrics", "", "", "")
	for _, want := range []string{`warden_monitor_findings_total{detector="rate_spike",severity="high"} 1`, "warden_monitor_time_to_contain_seconds_count 1",
		"warden_monitor_time_to_detect_seconds_count", "warden_monitor_observations_dropped_total 0"} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	// Acknowledge, then resolve; nothing is deleted.
	var out apitype.Finding
	if err := f.s.Root.Do(ctx, "POST", "/v1/findings/"+fnd.ID+"/ack", apitype.FindingUpdate{Note: "on it"}, &out); err != nil || out.Status != "acknowledged" {
		t.Fatalf("ack: %v %+v", err, out)
	}
	if err := f.s.Root.Do(ctx, "POST", "/v1/findings/"+fnd.ID+"/resolve", nil, &out); err != nil || out.Status != "resolved" || out.Note != "on it" {
		t.Fatalf("resolve: %v %+v", err, out)
	}
	if st, _, p, _ := call(t, f.s, "POST", "/v1/findings/"+fnd.ID+"/resolve", f.s.RootToken, "", ""); st != 409 || p.Code != "conflict" {
		t.Fatalf("resolve twice: %d %s", st, p.Code)
	}
	var list apitype.FindingList
	if err := f.s.Root.Do(ctx, "GET", "/v1/findings?status=resolved&severity=high,critical", nil, &list); err != nil || len(list.Findings) != 1 {
		t.Fatalf("resolved: %v %d", err, len(list.Findings))
	}
}

func TestBreakerThrottlesThroughGate(t *testing.T) {
	// One token per 1000 s: however slow this machine, no token refills
	// between the finding and the next call.
	f := newMonitorFixtureOn(t, wardentest.ServerOptions{Configure: func(c *config.Config) { c.Monitor.ThrottleRate = 0.001 }},
		map[string]string{"high": "throttle"}, "chatty")
	for range 5 {
		f.do(t, "chatty", "GET")
	}
	for range 10 {
		f.do(t, "chatty", "POST")
	}
	fnd := f.waitFinding(t, "identity=chatty", "rate_spike")
	if fnd.ActionTaken != "throttle" {
		t.Fatalf("%+v", fnd)
	}
	// The bucket starts empty: the next call is refused with 429 and
	// Retry-After, before any policy, and never forwarded.
	before := f.calls.Load()
	st, h, p := f.do(t, "chatty", "GET")
	if st != 429 || p.Code != "rate_limited" || h.Get("Retry-After") == "" || !strings.Contains(p.Detail, fnd.ID) || f.calls.Load() != before {
		t.Fatalf("throttled call: %d %s %q %q", st, p.Code, h.Get("Retry-After"), p.Detail)
	}
	var th apitype.ThrottleList
	if err := f.s.Root.Do(ctx, "GET", "/v1/breaker/throttles", nil, &th); err != nil || len(th.Throttles) != 1 || th.Throttles[0].Finding != fnd.ID {
		t.Fatalf("throttles: %v %+v", err, th)
	}
	// A human lifts it.
	var reset apitype.BreakerReset
	if err := f.s.Root.Do(ctx, "POST", "/v1/breaker/chatty/reset", apitype.BreakerTrip{Reason: "false alarm"}, &reset); err != nil || !reset.Throttled {
		t.Fatalf("reset: %v %+v", err, reset)
	}
	if st, _, p := f.do(t, "chatty", "GET"); st != 200 {
		t.Fatalf("after reset: %d %s", st, p.Code)
	}
}

func TestKillSwitchAndPause(t *testing.T) {
	f := newMonitorFixture(t, nil, "a1", "a2", "a3")
	tok := f.s.RootToken
	if st, _, p, _ := call(t, f.s, "POST", "/v1/breaker/a1/trip", tok, "application/json", `{}`); st != 400 || p.Code != "invalid" || p.Field != "reason" {
		t.Fatalf("trip without reason: %d %+v", st, p)
	}
	if st, _, p, _ := call(t, f.s, "POST", "/v1/breaker/nobody/trip", tok, "application/json", `{"reason":"x"}`); st != 404 {
		t.Fatalf("trip unknown: %d %s", st, p.Code)
	}
	if st, _, p, _ := call(t, f.s, "POST", "/v1/breaker/a1/trip", f.keys["a1"], "application/json", `{"reason":"x"}`); st != 403 {
		t.Fatalf("agent trips: %d %s", st, p.Code)
	}
	var tripped apitype.BreakerTripped
	if err := f.s.Root.Do(ctx, "POST", "/v1/breaker/a1/trip", apitype.BreakerTrip{Reason: "prompt injection suspected"}, &tripped); err != nil ||
		tripped.Identity.Status != "suspended" || tripped.Finding.Detector != "manual_trip" || tripped.Finding.Severity != "critical" {
		t.Fatalf("trip: %v %+v", err, tripped)
	}
	if st, _, p := f.do(t, "a1", "GET"); st != 403 || p.Code != "identity_suspended" {
		t.Fatalf("tripped agent: %d %s", st, p.Code)
	}
	// Pause every mail agent, then resume: the trip stays.
	if st, _, p, _ := call(t, f.s, "POST", "/v1/breaker/pause", tok, "application/json", `{"reason":"incident"}`); st != 400 || p.Field != "owner" {
		t.Fatalf("pause without selector: %d %+v", st, p)
	}
	var paused apitype.BreakerPaused
	if err := f.s.Root.Do(ctx, "POST", "/v1/breaker/pause", apitype.BreakerPause{Labels: map[string]string{"team": "mail"}, Reason: "incident 7"}, &paused); err != nil || len(paused.Identities) != 2 {
		t.Fatalf("pause: %v %+v", err, paused)
	}
	if st, _, p := f.do(t, "a2", "GET"); st != 403 || p.Code != "identity_suspended" {
		t.Fatalf("paused agent: %d %s", st, p.Code)
	}
	if err := f.s.Root.Do(ctx, "POST", "/v1/breaker/resume", apitype.BreakerPause{Owner: "alice@example.com"}, &paused); err != nil || len(paused.Identities) != 2 || len(paused.Skipped) != 1 {
		t.Fatalf("resume: %v %+v", err, paused)
	}
	if st, _, _ := f.do(t, "a3", "GET"); st != 200 {
		t.Fatalf("resumed agent: %d", st)
	}
	if st, _, _ := f.do(t, "a1", "GET"); st != 403 {
		t.Fatal("resume lifted the trip")
	}
}

func TestFindingsBadInput(t *testing.T) {
	f := newMonitorFixture(t, nil, "agent")
	tok := f.s.RootToken
	for _, c := range []struct{ query, field string }{
		{"severity=urgent", "severity"}, {"severity=high,,low", "severity"}, {"status=closed", "status"}, {"detector=magic", "detector"},
		{"limit=0", "limit"}, {"limit=abc", "limit"}, {"limit=5000", "limit"}, {"cursor=!!", "cursor"}, {"colour=red", "colour"},
	} {
		st, _, p, _ := call(t, f.s, "GET", "/v1/findings?"+c.query, tok, "", "")
		if st != 400 || p.Code != "invalid" || p.Field != c.field {
			t.Errorf("%s: %d %+v", c.query, st, p)
		}
	}
	if st, _, p, _ := call(t, f.s, "GET", "/v1/findings?identity=ghost", tok, "", ""); st != 404 {
		t.Errorf("unknown identity: %d %s", st, p.Code)
	}
	if st, _, p, _ := call(t, f.s, "GET", "/v1/findings", f.keys["agent"], "", ""); st != 403 {
		t.Errorf("agent lists findings: %d %s", st, p.Code)
	}
	if st, _, p, _ := call(t, f.s, "GET", "/v1/findings", "", "", ""); st != 401 {
		t.Errorf("anonymous: %d %s", st, p.Code)
	}
	for _, id := range []string{"fnd_doesnotexist0000000", "nope", strings.Repeat("x", 300)} {
		if st, _, p, _ := call(t, f.s, "POST", "/v1/findings/"+id+"/ack", tok, "", ""); st != 404 {
			t.Errorf("ack %s: %d %s", id[:4], st, p.Code)
		}
	}
	if st, _, p, _ := call(t, f.s, "POST", "/v1/findings/fnd_x/ack", tok, "application/json", `{"note":"a","extra":1}`); st != 400 {
		t.Errorf("unknown field: %d %s", st, p.Code)
	}
	// An empty list is a list.
	st, _, _, body := call(t, f.s, "GET", "/v1/findings", tok, "", "")
	var raw map[string]json.RawMessage
	if st != 200 || json.Unmarshal(body, &raw) != nil || string(raw["findings"]) != "[]" {
		t.Fatalf("empty: %d %s", st, body)
	}
}

// A restart keeps what was learned and what was decided: the suspended
// agent stays suspended, and an agent that had finished learning raises a
// finding on its first unusual call after the restart.
func TestMonitorSurvivesRestart(t *testing.T) {
	dir, key := t.TempDir(), []byte("0123456789abcdef0123456789abcdef")
	responses := map[string]string{"high": "suspend"}
	f := newMonitorFixtureOn(t, wardentest.ServerOptions{DataDir: dir, MasterKey: key}, responses, "runaway", "steady")
	for range 6 {
		f.do(t, "steady", "GET")
		f.do(t, "runaway", "GET")
	}
	for range 10 {
		f.do(t, "runaway", "POST")
	}
	f.waitFinding(t, "identity=runaway", "rate_spike")
	f.s.Stop() // saves the baselines

	f.s = wardentest.StartServer(t, wardentest.ServerOptions{DataDir: dir, MasterKey: key, Configure: monitorConfig(responses)})
	if st, _, p := f.do(t, "runaway", "GET"); st != 403 || p.Code != "identity_suspended" {
		t.Fatalf("runaway after restart: %d %s", st, p.Code)
	}
	if st, _, p := f.do(t, "steady", "POST"); st != 200 {
		t.Fatalf("steady: %d %s", st, p.Code)
	}
	fnd := f.waitFinding(t, "identity=steady", "new_operation")
	if fnd.Action != "mail:messages.send" || fnd.Severity != "medium" {
		t.Fatalf("%+v", fnd)
	}
}
