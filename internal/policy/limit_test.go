package policy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

const limitPolicy = `apiVersion: warden/v1
kind: Policy
name: mail
subjects: [{identity: bot}]
rules:
  - id: no-evil
    effect: deny
    actions: ["gmail:send"]
    when: 'has(params.to) && params.to == "evil@x.com"'
  - id: hourly
    effect: allow
    actions: ["gmail:send"]
    limit: {count: 3, per: 1h}
  - id: daily-backup
    effect: allow
    actions: ["gmail:send"]
    when: 'has(params.backup) && params.backup == true'
    limit: {count: 2, per: 1d}
  - id: broken
    effect: allow
    actions: ["gmail:send"]
    when: 'params.missing == 1'
`

func TestLimitsAtTheBoundary(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC)}
	e := NewEngine(Options{Now: c.Now})
	e.Put(mustPolicy(t, limitPolicy))
	ctx := context.Background()
	send := func(params map[string]any, dry bool) Decision {
		return e.Decide(ctx, &Request{Identity: bot, Action: "gmail:send", Params: params, DryRun: dry})
	}
	// Denied calls do not count.
	for range 5 {
		if d := send(map[string]any{"to": "evil@x.com"}, false); d.Code != CodeDenied {
			t.Fatalf("evil: %+v", d)
		}
	}
	// Dry runs do not count.
	for range 5 {
		if d := send(nil, true); d.Code != CodeAllowed {
			t.Fatalf("dry run: %+v", d)
		}
	}
	for i := range 3 {
		if d := send(nil, false); d.Code != CodeAllowed || d.Rule != "hourly" {
			t.Fatalf("call %d: %+v", i+1, d)
		}
	}
	// The 4th call is over: rate_limited, even though another allow errored,
	// with retry_after until the hour ends (fixed, epoch-aligned window).
	d := send(nil, false)
	if d.Code != CodeRateLimited || d.Effect != Deny || d.Rule != "hourly" || d.RetryAfter != 45*time.Minute || d.RetryAfterSeconds() != 2700 {
		t.Fatalf("4th call: %+v", d)
	}
	// A dry run past the limit answers rate_limited too.
	if d := send(nil, true); d.Code != CodeRateLimited {
		t.Fatalf("dry run past limit: %+v", d)
	}
	// With the hourly rule exhausted, the next matching allow within its own
	// limit allows and counts.
	for i := range 2 {
		if d := send(map[string]any{"backup": true}, false); d.Code != CodeAllowed || d.Rule != "daily-backup" {
			t.Fatalf("backup %d: %+v", i+1, d)
		}
	}
	d = send(map[string]any{"backup": true}, false)
	if d.Code != CodeRateLimited || d.RetryAfter != 45*time.Minute {
		t.Fatalf("both exhausted: soonest reset should win: %+v", d)
	}
	// Re-applying the policy (recompiled, same name) keeps the counters.
	e.Put(mustPolicy(t, limitPolicy))
	if d := send(nil, false); d.Code != CodeRateLimited {
		t.Fatalf("re-apply reset the counter: %+v", d)
	}
	// One second before the window ends: still limited. At the boundary: a new window.
	c.Set(time.Date(2026, 3, 2, 10, 59, 59, 0, time.UTC))
	if d := send(nil, false); d.Code != CodeRateLimited || d.RetryAfter != time.Second {
		t.Fatalf("10:59:59: %+v", d)
	}
	c.Set(time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC))
	if d := send(nil, false); d.Code != CodeAllowed || d.Rule != "hourly" {
		t.Fatalf("11:00: %+v", d)
	}
	// Another identity has its own counter.
	other := Identity{ID: "nhi_other", Name: "bot"} // same name, other id: same policy subject
	d = e.Decide(ctx, &Request{Identity: other, Action: "gmail:send"})
	if d.Code != CodeAllowed {
		t.Fatalf("other identity: %+v", d)
	}
}

func TestLimitExactUnderConcurrency(t *testing.T) {
	src := "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: bot}]\nrules:\n  - {id: r, effect: allow, actions: ['a:b'], limit: {count: 1000, per: 1h}}\n"
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	e := NewEngine(Options{Now: func() time.Time { return now }})
	e.Put(mustPolicy(t, src))
	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				d := e.Decide(context.Background(), &Request{Identity: bot, Action: "a:b"})
				switch d.Code {
				case CodeAllowed:
					allowed.Add(1)
				case CodeRateLimited:
					limited.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 1000 || limited.Load() != 1000 {
		t.Fatalf("allowed %d, limited %d; want exactly 1000 each", allowed.Load(), limited.Load())
	}
}

func TestMemoryLimiterExpiresAndBounds(t *testing.T) {
	l := NewMemoryLimiter(limiterShards) // one counter per shard
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	lim := Limit{Count: 5, Per: time.Minute}
	var full int
	for i := range 200 {
		key := LimitKey{Policy: "p", Rule: "r", Identity: string(rune('a'+i%26)) + string(rune('a'+i/26))}
		if _, err := l.Take(ctx, key, lim, t0, true); err != nil {
			full++
		}
	}
	if full == 0 || l.Len() > limiterShards {
		t.Fatalf("cap not enforced: %d counters, %d refusals", l.Len(), full)
	}
	// Once the windows have ended, a sweep frees them and new keys fit again.
	t1 := t0.Add(2 * time.Minute)
	if _, err := l.Take(ctx, LimitKey{Policy: "p", Rule: "r", Identity: "fresh"}, lim, t1, true); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if l.Len() > 2 {
		// Only the shard touched sweeps; the others sweep when next touched.
		n := 0
		for i := range 64 {
			l.Take(ctx, LimitKey{Policy: "q", Rule: "r", Identity: string(rune('A' + i))}, lim, t1, false)
			n++
		}
	}
	if got := l.Len(); got > limiterShards/2 {
		t.Fatalf("stale windows kept: %d", got)
	}
	// A period change on re-apply starts a new window.
	key := LimitKey{Policy: "p", Rule: "x", Identity: "i"}
	for range 5 {
		l.Take(ctx, key, lim, t1, true)
	}
	if r, _ := l.Take(ctx, key, lim, t1, true); r.Allowed {
		t.Fatal("6th call allowed")
	}
	if r, _ := l.Take(ctx, key, Limit{Count: 5, Per: time.Hour}, t1, true); !r.Allowed {
		t.Fatal("new period kept the old count")
	}
}
