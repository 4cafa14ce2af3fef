package monitor

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"warden/internal/gate"
)

// The detectors are tested on synthetic streams: an agent with a normal
// working pattern, then one injected incident. Times come from the
// observations (the injectable clock), so nothing here waits.

const (
	agentID = "nhi_agent00000000000000000"
	agentUA = "python-requests/2.31.0"
	agentIP = "198.51.100.7"
	keyID   = "key_agent0000000000000000"
)

var start = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

func testTuning() Tuning {
	t := DefaultTuning
	t.LearningCalls = 200
	t.LearningPeriod = 3 * 24 * time.Hour
	return t.withDefaults()
}

type stream struct {
	t   testing.TB
	e   *engine
	now time.Time
	rnd *rand.Rand
	got []*Finding
	// The agent's identity, key, address and client.
	id, key, ip, ua string
	ops             []string
	batch           int           // calls in the daily 09:00 batch
	step            time.Duration // the longest pause between calls
	calls           int           // decided observations sent
}

func newStream(t testing.TB, tu Tuning) *stream {
	return &stream{t: t, e: newEngine(tu, 1000), now: start, rnd: rand.New(rand.NewPCG(1, 2)), id: agentID, key: keyID, ip: agentIP, ua: agentUA,
		ops: []string{"crm:contacts.get", "crm:contacts.list", "gmail:messages.send", "gmail:messages.list"}, batch: 25, step: 300 * time.Second}
}

func (s *stream) obs(o gate.Observation) []*Finding {
	if o.IdentityID == "" {
		o.IdentityID = s.id
	}
	if o.Time.IsZero() {
		o.Time = s.now
	}
	if o.ClientIP == "" {
		o.ClientIP = s.ip
	}
	if o.UserAgent == "" {
		o.UserAgent = s.ua
	}
	if o.KeyID == "" {
		o.KeyID = s.key
	}
	if !o.Completed {
		s.calls++
	}
	if o.Decision == "" {
		o.Decision, o.Code = "allow", "allowed"
	}
	if o.Class == "" {
		o.Class = "read"
	}
	fs := s.e.observe(&o, who{Name: "support-agent", Owner: "alice@example.com"})
	for _, f := range fs {
		f.raisedAt = o.Time
	}
	s.got = append(s.got, fs...)
	return fs
}

// normal plays `days` of a support agent's working days: weekdays 08:00 to
// 18:00 UTC, a call every 1 to 5 minutes on its usual operations (reads
// and a few sends), a nightly-style batch of 25 sends at 09:00, a refusal
// now and then, completed calls with ordinary response sizes.
func (s *stream) normal(days int) { s.normalUntil(s.now.Add(time.Duration(days) * 24 * time.Hour)) }

// normalUntil plays the normal pattern until end.
func (s *stream) normalUntil(end time.Time) {
	ops := s.ops
	batched := map[int]bool{}
	for s.now.Before(end) {
		wd := s.now.Weekday()
		h := s.now.Hour()
		if wd == time.Saturday || wd == time.Sunday || h < 8 || h >= 18 {
			s.now = s.now.Add(time.Hour).Truncate(time.Hour)
			continue
		}
		if h == 9 && !batched[s.now.YearDay()] {
			batched[s.now.YearDay()] = true
			s.now = s.now.Truncate(time.Minute)
			for i := range s.batch {
				s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * time.Second), Action: ops[len(ops)-2], Class: "write"})
			}
			s.now = s.now.Add(time.Minute)
			continue
		}
		op := ops[s.rnd.IntN(len(ops))]
		o := gate.Observation{Action: op}
		if s.rnd.IntN(200) == 0 {
			o.Decision, o.Code = "deny", "rate_limited"
		}
		s.obs(o)
		if o.Decision != "deny" {
			s.obs(gate.Observation{Action: op, Completed: true, Status: 200, BytesOut: int64(2000 + s.rnd.IntN(30000))})
		}
		s.now = s.now.Add(time.Duration(60+s.rnd.Int64N(int64(max(s.step/time.Second-59, 1)))) * time.Second)
	}
}

func (s *stream) quiet(what string) {
	s.t.Helper()
	if len(s.got) > 0 {
		for _, f := range s.got {
			s.t.Errorf("%s: unexpected %s %s finding: %s", what, f.Severity, f.Detector, f.Explanation)
		}
		s.t.FailNow()
	}
}

// only asserts that exactly the given detectors fired (once each, in any
// order) since the last check, and returns them by detector.
func (s *stream) only(dets ...string) map[string]*Finding {
	s.t.Helper()
	by := map[string]*Finding{}
	for _, f := range s.got {
		if _, dup := by[f.Detector]; dup {
			s.t.Fatalf("%s fired twice: %s", f.Detector, f.Explanation)
		}
		by[f.Detector] = f
	}
	for _, d := range dets {
		if by[d] == nil {
			var names []string
			for k := range by {
				names = append(names, k)
			}
			s.t.Fatalf("%s did not fire (fired: %v)", d, names)
		}
	}
	if len(by) != len(dets) {
		for _, f := range s.got {
			s.t.Logf("fired: %s %s: %s", f.Severity, f.Detector, f.Explanation)
		}
		s.t.Fatalf("want only %v", dets)
	}
	s.got = nil
	return by
}

func TestQuietOnNormalTraffic(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(28)
	s.quiet("four weeks of normal work")
	b := s.e.ids[agentID]
	if !b.learned() || b.Calls < 2000 {
		t.Fatalf("learned %v after %d calls", b.learned(), b.Calls)
	}
}

func TestNothingWhileLearning(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(1)
	// Unusual things during the learning period become part of the
	// baseline instead of alerts.
	s.obs(gate.Observation{Action: "github:repos.delete", Class: "delete"})
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "203.0.113.9", UserAgent: "curl/8.0"})
	for range 100 {
		s.obs(gate.Observation{Action: "crm:contacts.get"})
	}
	s.quiet("learning")
}

func TestRateSpike(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.now = time.Date(2026, 3, 9, 14, 30, 0, 0, time.UTC)
	var firstAt time.Time
	for i := range 400 {
		at := s.now.Add(time.Duration(i) * 100 * time.Millisecond)
		if i == 0 {
			firstAt = at
		}
		s.obs(gate.Observation{Time: at, Action: "gmail:messages.send", Class: "write"})
	}
	var high, crit *Finding
	for _, f := range s.got {
		switch {
		case f.Detector != DetRateSpike:
			t.Fatalf("unexpected %s: %s", f.Detector, f.Explanation)
		case f.Severity == High:
			high = f
		case f.Severity == Critical:
			crit = f
		}
	}
	if high == nil || crit == nil || len(s.got) != 2 {
		t.Fatalf("want one high and one critical spike, got %d findings", len(s.got))
	}
	n := high.Evidence["count"].(int)
	// Raised as soon as the count reaches the threshold: at least the floor
	// and 1.5x the learned peak (the daily batch of 25, decayed over the
	// weekend).
	if n != high.Evidence["threshold"].(int) || n < 30 || float64(n) < 1.5*high.Evidence["peak"].(float64) {
		t.Fatalf("raised at %d calls; threshold %v", n, high.Evidence["threshold"])
	}
	if high.FirstEventAt.Before(firstAt) || high.FirstEventAt.After(firstAt.Add(5*time.Second)) {
		t.Fatalf("first anomalous event %v, burst began %v", high.FirstEventAt, firstAt)
	}
	if !strings.Contains(high.Explanation, "gmail:messages.send") || !strings.Contains(high.Explanation, "support-agent") || high.Owner != "alice@example.com" {
		t.Fatalf("explanation: %s", high.Explanation)
	}
	// The incident is not learned: the next day a similar burst fires again.
	s.got = nil
	s.now = time.Date(2026, 3, 10, 14, 30, 0, 0, time.UTC)
	for i := range 100 {
		s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 100 * time.Millisecond), Action: "gmail:messages.send", Class: "write"})
	}
	if len(s.got) != 1 || s.got[0].Detector != DetRateSpike || s.got[0].Evidence["threshold"].(int) > 60 {
		t.Fatalf("after the incident: %d findings", len(s.got))
	}
}

func TestNewOperation(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.now = time.Date(2026, 3, 9, 11, 0, 0, 0, time.UTC)
	f := s.obs(gate.Observation{Action: "crm:contacts.export", Class: "read"})
	if len(f) != 1 || f[0].Detector != DetNewOperation || f[0].Severity != Low {
		t.Fatalf("new read on a known connector: %v", f)
	}
	if f := s.obs(gate.Observation{Action: "crm:contacts.export", Class: "read"}); len(f) != 0 {
		t.Fatal("second use is not new")
	}
	f = s.obs(gate.Observation{Action: "crm:contacts.delete", Class: "delete"})
	if len(f) != 1 || f[0].Severity != High {
		t.Fatalf("new delete: %v", f)
	}
	f = s.obs(gate.Observation{Action: "s3:objects.put", Class: "write"})
	if len(f) != 1 || f[0].Severity != Medium || f[0].Evidence["new_connector"] != true || !strings.Contains(f[0].Explanation, "new connector") {
		t.Fatalf("new connector: %+v", f)
	}
	s.got = nil
}

func TestOffHours(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(9) // to Wednesday of the second week
	s.quiet("normal")
	at := time.Date(2026, 3, 11, 3, 12, 0, 0, time.UTC)
	s.obs(gate.Observation{Time: at, Action: "crm:contacts.get"})
	f := s.only(DetOffHours)[DetOffHours]
	if f.Severity != Medium || !strings.Contains(f.Explanation, "03:12 UTC") {
		t.Fatalf("%s", f.Explanation)
	}
	// A second call in the same hour is the same finding (cooldown) and the
	// hour is now known.
	s.obs(gate.Observation{Time: at.Add(time.Minute), Action: "crm:contacts.get"})
	s.quiet("same hour")
	// With less than HoursAfter of history, a new hour is not an alert.
	s2 := newStream(t, testTuning())
	s2.normal(4)
	s2.obs(gate.Observation{Time: time.Date(2026, 3, 6, 2, 0, 0, 0, time.UTC), Action: "crm:contacts.get"})
	s2.quiet("short history")
}

func TestDenialBurstAndProbing(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.now = time.Date(2026, 3, 9, 10, 0, 30, 0, time.UTC)
	for i := range 12 {
		s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * time.Second), Action: "crm:contacts.get", Decision: "deny", Code: "denied"})
	}
	f := s.only(DetDenialBurst)[DetDenialBurst]
	if f.Evidence["count"].(int) != 10 || !strings.Contains(f.Explanation, "refused 10 times") {
		t.Fatalf("%v: %s", f.Evidence, f.Explanation)
	}
	// Low and slow: one new refused operation every 50 minutes, never more
	// than one refusal per minute.
	s.now = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)
	probes := []string{"crm:admin.users", "crm:contacts.delete", "gmail:settings.update", "gmail:filters.create", "crm:export.all"}
	for i, a := range probes {
		s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 50 * time.Minute), Action: a, Decision: "deny", Code: "no_matching_policy"})
	}
	got := s.got
	s.got = nil
	var probe *Finding
	for _, f := range got {
		if f.Detector == DetProbing {
			probe = f
		} else if f.Detector != DetNewOperation {
			t.Fatalf("unexpected %s: %s", f.Detector, f.Explanation)
		}
	}
	if probe == nil || probe.Severity != High || len(probe.Evidence["actions"].([]string)) != 5 {
		t.Fatalf("probing: %+v", probe)
	}
	// The same refusals again are not new refusals.
	for i, a := range probes {
		s.obs(gate.Observation{Time: s.now.Add(5*time.Hour + time.Duration(i)*time.Minute), Action: a, Decision: "deny", Code: "no_matching_policy"})
	}
	s.quiet("known refusals")
}

func TestNetworkClientAndBrowser(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.now = time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "198.51.100.200"}) // same /24
	s.quiet("same network")
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "203.0.113.5"})
	f := s.only(DetNewNetwork)[DetNewNetwork]
	if f.Evidence["network"] != "203.0.113.0/24" || !strings.Contains(f.Explanation, "198.51.100.0/24") {
		t.Fatalf("%s", f.Explanation)
	}
	s.now = s.now.Add(10 * time.Minute) // not within the key-reuse window
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "2001:db8:1:2::17"})
	if f := s.only(DetNewNetwork)[DetNewNetwork]; f.Evidence["network"] != "2001:db8:1:2::/64" {
		t.Fatalf("v6: %v", f.Evidence)
	}
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "2001:db8:1:2::99"})
	s.quiet("same /64")
	s.obs(gate.Observation{Action: "crm:contacts.get", UserAgent: "python-requests/2.32.3"})
	s.quiet("a new version of the same client")
	s.obs(gate.Observation{Action: "crm:contacts.get", UserAgent: "curl/8.5.0"})
	s.only(DetNewClient)
	s.obs(gate.Observation{Action: "crm:contacts.get", UserAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"})
	if f := s.only(DetInteractive)[DetInteractive]; f.Severity != High || !strings.Contains(f.Explanation, "web browser") {
		t.Fatalf("%s", f.Explanation)
	}
}

func TestKeyReuse(t *testing.T) {
	s := newStream(t, testTuning())
	// During learning too: the key is used from three networks in a minute.
	s.obs(gate.Observation{Action: "crm:contacts.get", ClientIP: "198.51.100.7"})
	s.obs(gate.Observation{Time: start.Add(20 * time.Second), Action: "crm:contacts.get", ClientIP: "203.0.113.7"})
	s.quiet("two networks")
	s.obs(gate.Observation{Time: start.Add(40 * time.Second), Action: "crm:contacts.get", ClientIP: "192.0.2.7"})
	f := s.only(DetKeyReuse)[DetKeyReuse]
	if f.Severity != High || f.KeyID != keyID || len(f.Evidence["networks"].([]string)) != 3 {
		t.Fatalf("%+v", f)
	}
	// A key that moves between networks over hours is not reuse.
	s2 := newStream(t, testTuning())
	for i, ip := range []string{"198.51.100.7", "203.0.113.7", "192.0.2.7", "100.64.0.7"} {
		s2.obs(gate.Observation{Time: start.Add(time.Duration(i) * time.Hour), Action: "crm:contacts.get", ClientIP: ip})
	}
	s2.quiet("moving over hours")
}

func TestApprovalFlood(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.now = time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	for i := range 12 {
		s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 10 * time.Second), Action: "gmail:messages.send", Class: "write",
			Decision: "require_approval", Code: "approval_required"})
	}
	f := s.only(DetApprovalFlood)[DetApprovalFlood]
	if !strings.Contains(f.Explanation, "10 human approvals") {
		t.Fatalf("%s", f.Explanation)
	}
}

func TestLargeResponse(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	s.obs(gate.Observation{Action: "crm:contacts.list", Completed: true, Status: 200, BytesOut: 600 << 10})
	s.quiet("600 KiB is under the floor")
	s.obs(gate.Observation{Action: "crm:contacts.list", Completed: true, Status: 200, BytesOut: 80 << 20})
	if f := s.only(DetLargeResponse)[DetLargeResponse]; !strings.Contains(f.Explanation, "80.0 MiB") {
		t.Fatalf("%s", f.Explanation)
	}
}

func TestClockJumps(t *testing.T) {
	s := newStream(t, testTuning())
	s.normal(7)
	s.quiet("normal")
	b := s.e.ids[agentID]
	last := b.Last
	// The clock steps back an hour: observations count in the current
	// buckets, nothing fires, Last does not move back.
	for i := range 20 {
		s.obs(gate.Observation{Time: last.Add(-time.Hour + time.Duration(i)*time.Second), Action: "crm:contacts.get"})
	}
	s.quiet("clock stepped back")
	if !b.Last.Equal(last) {
		t.Fatalf("last moved back to %v", b.Last)
	}
	// Then jumps a month ahead: the rates decay, nothing fires.
	s.now = last.Add(30 * 24 * time.Hour).Truncate(24 * time.Hour).Add(10 * time.Hour)
	s.obs(gate.Observation{Action: "crm:contacts.get"})
	s.quiet("clock jumped ahead")
	if op := b.Ops["crm:contacts.get"]; op.Rate.Stat.Mean > 0.01 || op.Rate.Start != s.now.Truncate(time.Minute) {
		t.Fatalf("rate after the jump: %+v", op.Rate)
	}
}

func TestCapsBoundMemory(t *testing.T) {
	tu := testTuning()
	tu.LearningCalls, tu.LearningPeriod = 1, 0
	s := newStream(t, tu)
	for i := range 2000 {
		s.obs(gate.Observation{Time: start.Add(time.Duration(i) * time.Minute), Action: fmt.Sprintf("x:op%d", i),
			ClientIP: fmt.Sprintf("10.%d.%d.1", i/256, i%256), UserAgent: fmt.Sprintf("client%d/1", i)})
	}
	b := s.e.ids[agentID]
	if len(b.Ops) != maxOps || !b.OpsFull || len(b.Networks) != maxNetworks || len(b.Agents) != maxAgents {
		t.Fatalf("ops %d networks %d agents %d", len(b.Ops), len(b.Networks), len(b.Agents))
	}
	// Identities beyond the cap are counted, not learned.
	e := newEngine(tu, 2)
	for i := range 5 {
		e.observe(&gate.Observation{Time: start, IdentityID: fmt.Sprintf("nhi_%d", i), Action: "x:y", Decision: "allow"}, who{})
	}
	if len(e.ids) != 2 || e.untracked != 3 {
		t.Fatalf("tracked %d, untracked %d", len(e.ids), e.untracked)
	}
}
