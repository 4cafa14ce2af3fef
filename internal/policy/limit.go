package policy

import (
	"context"
	"sync"
	"time"

	"warden"
)

// LimitKey names one counter: the calls a rule allowed one identity. Policy
// name and rule id (not a version) make counters survive re-applying a policy.
type LimitKey struct {
	Policy   string
	Rule     string
	Identity string
}

// LimitResult is the outcome of Limiter.Take.
type LimitResult struct {
	// Allowed is true when the window had room; the call was counted unless
	// Take was asked not to commit.
	Allowed bool
	// RetryAfter is the time until the window resets, when not Allowed.
	RetryAfter time.Duration
}

// Limiter keeps rate-limit counters. Decide calls Take once per limited allow
// rule that would decide the call. Implementations must make the check and the
// count one atomic step: with N calls left, exactly N concurrent Takes succeed.
//
// Windows are fixed and aligned to the Unix epoch: the window of a call at
// time now is [now - (now mod per), that + per). Every replica computes the
// same window for the same instant, so a shared store needs no coordination
// beyond one atomic upsert per call.
type Limiter interface {
	// Take checks the counter for key in the window containing now. With
	// room (count < limit.Count) it returns Allowed and, if commit, counts
	// the call. Without room it returns RetryAfter. An error means the
	// counter could not be read or written; Decide then fails closed.
	Take(ctx context.Context, key LimitKey, limit Limit, now time.Time, commit bool) (LimitResult, error)
}

// windowStart returns the start of the epoch-aligned window of length per
// containing now, in Unix nanoseconds.
func windowStart(now time.Time, per time.Duration) int64 {
	n := now.UnixNano()
	m := n % int64(per)
	if m < 0 {
		m += int64(per)
	}
	return n - m
}

const limiterShards = 64

// MemoryLimiter is an in-process Limiter: 64 shards, each a mutex and a map.
// Counters for windows that have ended are dropped by a sweep that runs at
// most once a minute per shard, so memory stays proportional to the windows
// still open. A hard cap on counters bounds memory even under abuse; when
// it is reached Take fails and Decide denies (fail closed) rather than
// forgetting counts.
type MemoryLimiter struct {
	shards   [limiterShards]limiterShard
	maxShard int
}

type limiterShard struct {
	mu        sync.Mutex
	m         map[LimitKey]window
	nextSweep int64
}

type window struct {
	start int64 // Unix ns
	per   time.Duration
	count int64
}

// DefaultMaxCounters is the MemoryLimiter's default cap on open counters.
const DefaultMaxCounters = 1 << 20

// NewMemoryLimiter returns an empty in-memory limiter holding at most
// maxCounters open counters (DefaultMaxCounters when maxCounters <= 0).
func NewMemoryLimiter(maxCounters int) *MemoryLimiter {
	if maxCounters <= 0 {
		maxCounters = DefaultMaxCounters
	}
	l := &MemoryLimiter{maxShard: max(1, maxCounters/limiterShards)}
	for i := range l.shards {
		l.shards[i].m = make(map[LimitKey]window)
	}
	return l
}

func (l *MemoryLimiter) shard(k LimitKey) *limiterShard {
	// FNV-1a over the three strings, separated so ("ab","c") != ("a","bc").
	h := uint32(2166136261)
	for _, s := range [3]string{k.Policy, k.Rule, k.Identity} {
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
		h ^= 0xff
		h *= 16777619
	}
	return &l.shards[h%limiterShards]
}

// Take implements Limiter.
func (l *MemoryLimiter) Take(_ context.Context, key LimitKey, limit Limit, now time.Time, commit bool) (LimitResult, error) {
	if limit.Per <= 0 || limit.Count <= 0 {
		return LimitResult{}, warden.Errorf(warden.CodeInternal, "invalid limit %d per %s", limit.Count, limit.Per)
	}
	start := windowStart(now, limit.Per)
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	nowNs := now.UnixNano()
	if nowNs >= s.nextSweep {
		for k, w := range s.m {
			if w.start+int64(w.per) <= nowNs {
				delete(s.m, k)
			}
		}
		s.nextSweep = nowNs + int64(time.Minute)
	}
	w, ok := s.m[key]
	if !ok || w.start != start || w.per != limit.Per {
		// A new window, or the rule's period changed on re-apply: the old
		// count belongs to a window that no longer exists.
		w = window{start: start, per: limit.Per}
	}
	if w.count >= limit.Count {
		return LimitResult{RetryAfter: time.Duration(start + int64(limit.Per) - nowNs)}, nil
	}
	if commit {
		if !ok && len(s.m) >= l.maxShard {
			return LimitResult{}, warden.Errorf(warden.CodeUnavailable, "rate-limit counters are full")
		}
		w.count++
		s.m[key] = w
	}
	return LimitResult{Allowed: true}, nil
}

// Len returns the number of open counters (for tests and metrics).
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
