package monitor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"warden/internal/gate"
)

// The scenario set: eight simulated agents with their own working
// patterns over four weeks, and four injected incidents in the fourth
// (a stolen key used from elsewhere, a prompt-injected agent exfiltrating
// through a new operation, a runaway loop sending mail, low-and-slow
// probing). It reports detection rate, false alerts per 10,000 normal
// calls and time to detect, in simulated time, with the default tuning.
//
//	go test ./internal/monitor -run TestScenarios -v

type incident struct {
	name  string
	agent int
	at    time.Time
	until time.Time
	play  func(s *stream)
}

type scenarioResult struct {
	normalCalls int
	incidents   map[string]time.Duration // incident -> time to detect (-1: missed)
	detectors   map[string][]string      // incident -> detectors that fired, in order
	falseAlerts []*Finding
}

func runScenarios(tb testing.TB) scenarioResult {
	tu := DefaultTuning.withDefaults()
	e := newEngine(tu, 1000)
	type profile struct {
		ops   []string
		batch int
		step  time.Duration
		ua    string
	}
	profiles := []profile{
		{[]string{"crm:contacts.get", "crm:contacts.list", "gmail:messages.send", "gmail:messages.list"}, 25, 5 * time.Minute, "python-requests/2.31.0"},
		{[]string{"github:issues.get", "github:issues.list", "github:issues.create", "github:pulls.list"}, 10, 3 * time.Minute, "octokit/3.1"},
		{[]string{"slack:conversations.history", "slack:chat.postMessage", "slack:users.info"}, 0, 2 * time.Minute, "slack-sdk/3.27"},
		{[]string{"jira:issue.get", "jira:search", "jira:issue.create", "jira:comment.add"}, 40, 10 * time.Minute, "go-http-client/2.0"},
		{[]string{"stripe:charges.list", "stripe:customers.get", "stripe:refunds.create"}, 5, 20 * time.Minute, "stripe-go/76"},
		{[]string{"openai:chat.completions", "openai:embeddings"}, 30, 90 * time.Second, "openai-python/1.12"},
		{[]string{"notion:pages.get", "notion:databases.query", "notion:pages.update"}, 0, 8 * time.Minute, "notion-sdk-js/2.2"},
		{[]string{"zendesk:tickets.get", "zendesk:tickets.update", "zendesk:tickets.list", "gmail:messages.send"}, 15, 4 * time.Minute, "zendesk-client/1.0"},
	}
	streams := make([]*stream, len(profiles))
	for i, p := range profiles {
		s := &stream{t: tb, e: e, now: start, rnd: rand.New(rand.NewPCG(uint64(i)+7, 99)), id: fmt.Sprintf("nhi_agent%02d", i), key: fmt.Sprintf("key_agent%02d", i),
			ip: fmt.Sprintf("10.%d.0.%d", i, 10+i), ua: p.ua, ops: p.ops, batch: p.batch, step: p.step}
		streams[i] = s
	}
	week4 := start.Add(21 * 24 * time.Hour)
	end := start.Add(28 * 24 * time.Hour)
	incidents := []incident{
		{name: "stolen key used from elsewhere", agent: 0, at: week4.Add(24*time.Hour + 13*time.Hour), play: func(s *stream) {
			for i := range 20 {
				s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 30 * time.Second), Action: "crm:contacts.list", ClientIP: "203.0.113.50", UserAgent: "curl/8.4.0"})
			}
		}},
		{name: "prompt-injected exfiltration through a new operation", agent: 1, at: week4.Add(2*24*time.Hour + 11*time.Hour), play: func(s *stream) {
			for i := range 30 {
				at := s.now.Add(time.Duration(i) * 30 * time.Second)
				s.obs(gate.Observation{Time: at, Action: "github:repos.download", Class: "read"})
				s.obs(gate.Observation{Time: at.Add(2 * time.Second), Action: "github:repos.download", Completed: true, Status: 200, BytesOut: 20 << 20})
			}
		}},
		{name: "runaway loop sending mail", agent: 7, at: week4.Add(3*24*time.Hour + 15*time.Hour + 17*time.Minute), play: func(s *stream) {
			for i := range 600 { // 20 calls a second for 30 seconds
				s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 50 * time.Millisecond), Action: "gmail:messages.send", Class: "write"})
			}
		}},
		{name: "low-and-slow probing", agent: 4, at: week4.Add(4*24*time.Hour + 9*time.Hour), play: func(s *stream) {
			for i, a := range []string{"stripe:payouts.create", "stripe:accounts.list", "stripe:balance.get", "stripe:customers.delete", "stripe:webhooks.list", "stripe:keys.list"} {
				s.obs(gate.Observation{Time: s.now.Add(time.Duration(i) * 40 * time.Minute), Action: a, Decision: "deny", Code: "no_matching_policy"})
			}
		}},
	}
	type raised struct {
		f  *Finding
		at time.Time
	}
	var all []raised
	collect := func(s *stream) {
		for _, f := range s.got {
			all = append(all, raised{f: f, at: f.raisedAt})
		}
		s.got = nil
	}
	res := scenarioResult{incidents: map[string]time.Duration{}, detectors: map[string][]string{}}
	for i, s := range streams {
		for j := range incidents {
			in := &incidents[j]
			if in.agent != i {
				continue
			}
			s.normalUntil(in.at)
			normal := s.calls
			s.now = in.at
			in.play(s)
			// Findings on this agent within four hours of the incident's
			// start are attributed to it (the probing spans 3h20m); the
			// agent's normal work resumes after it.
			in.until = in.at.Add(4 * time.Hour)
			s.calls = normal // incident calls are not normal calls
			s.now = in.until
		}
		s.normalUntil(end)
		res.normalCalls += s.calls
		collect(s)
	}
	for _, in := range incidents {
		res.incidents[in.name] = -1
	}
	for _, r := range all {
		matched := false
		for _, in := range incidents {
			if r.f.IdentityID == streams[in.agent].id && !r.at.Before(in.at) && r.at.Before(in.until) {
				matched = true
				res.detectors[in.name] = append(res.detectors[in.name], fmt.Sprintf("%s/%s@%s", r.f.Detector, r.f.Severity, r.at.Sub(in.at)))
				if d := r.at.Sub(in.at); res.incidents[in.name] < 0 || d < res.incidents[in.name] {
					res.incidents[in.name] = d
				}
			}
		}
		if !matched {
			res.falseAlerts = append(res.falseAlerts, r.f)
		}
	}
	return res
}

func TestScenarios(t *testing.T) {
	res := runScenarios(t)
	var ttds []time.Duration
	for name, d := range res.incidents {
		if d < 0 {
			t.Errorf("incident not detected: %s", name)
			continue
		}
		ttds = append(ttds, d)
		t.Logf("detected %-55s after %-6s by %v", name, d, res.detectors[name])
	}
	slices.Sort(ttds)
	perTenK := float64(len(res.falseAlerts)) / float64(res.normalCalls) * 10000
	t.Logf("normal calls %d, false alerts %d (%.2f per 10,000), detection %d/%d", res.normalCalls, len(res.falseAlerts), perTenK, len(ttds), len(res.incidents))
	if len(ttds) > 0 {
		t.Logf("median time to detect %s", ttds[len(ttds)/2])
	}
	for _, f := range res.falseAlerts {
		t.Logf("false alert: %s %s: %s", f.Severity, f.Detector, f.Explanation)
	}
	if perTenK > 1 {
		t.Errorf("%.2f false alerts per 10,000 normal calls; the target is at most 1", perTenK)
	}
	if d := res.incidents["runaway loop sending mail"]; d < 0 || d > 5*time.Second {
		t.Errorf("runaway loop detected after %s; the target is within 5s", d)
	}
}
