package monitor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"warden"
	"warden/internal/identity"
)

// bucket is a throttled identity's token bucket.
type bucket struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	until   time.Time
	reason  string
	finding string
}

// throttle limits f's identity to the configured rate until Throttle.For
// from now (a later finding extends it).
func (m *Monitor) throttle(f *Finding) {
	now := m.o.Now()
	reason := clip(fmt.Sprintf("throttled by the circuit breaker until %s (finding %s, %s %s)", now.Add(m.o.Throttle.For).UTC().Format(time.RFC3339), f.ID, f.Severity, f.Detector), 512)
	nb := &bucket{tokens: 0, last: now, until: now.Add(m.o.Throttle.For), reason: reason, finding: f.ID}
	if v, loaded := m.throttles.LoadOrStore(f.IdentityID, nb); loaded {
		b := v.(*bucket)
		b.mu.Lock()
		b.until, b.reason, b.finding = nb.until, reason, f.ID
		b.tokens = min(b.tokens, 0)
		b.mu.Unlock()
	} else {
		m.nThrottled.Add(1)
	}
}

// Throttled implements the gate's throttle check: whether the identity is
// throttled now and out of tokens, and if so how long to wait. It costs
// one atomic load when nobody is throttled.
func (m *Monitor) Throttled(identityID string, now time.Time) (time.Duration, string, bool) {
	if m.nThrottled.Load() == 0 {
		return 0, "", false
	}
	v, ok := m.throttles.Load(identityID)
	if !ok {
		return 0, "", false
	}
	b := v.(*bucket)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !now.Before(b.until) {
		if m.throttles.CompareAndDelete(identityID, b) {
			m.nThrottled.Add(-1)
		}
		return 0, "", false
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(m.o.Throttle.Burst), b.tokens+el.Seconds()*m.o.Throttle.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, "", false
	}
	wait := time.Duration((1 - b.tokens) / m.o.Throttle.Rate * float64(time.Second))
	return wait, b.reason, true
}

// ThrottleInfo describes a throttled identity.
type ThrottleInfo struct {
	IdentityID string
	Until      time.Time
	Reason     string
	Finding    string
}

// Throttles lists the identities throttled now.
func (m *Monitor) Throttles() []ThrottleInfo {
	now := m.o.Now()
	var out []ThrottleInfo
	m.throttles.Range(func(k, v any) bool {
		b := v.(*bucket)
		b.mu.Lock()
		if now.Before(b.until) {
			out = append(out, ThrottleInfo{IdentityID: k.(string), Until: b.until, Reason: b.reason, Finding: b.finding})
		}
		b.mu.Unlock()
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].IdentityID < out[j].IdentityID })
	return out
}

// Reset lifts a throttle early (security role or the identity's owner).
// It reports whether there was one. Suspensions are lifted with the
// identity's resume, not here.
func (m *Monitor) Reset(ctx context.Context, p warden.Principal, ref, reason string) (*identity.Identity, bool, error) {
	if err := checkReason(reason, false); err != nil {
		return nil, false, err
	}
	if err := m.needIdentities(); err != nil {
		return nil, false, err
	}
	id, err := m.o.Identities.Get(ctx, p, ref)
	if err != nil {
		return nil, false, err
	}
	if !p.HasRole(warden.RoleSecurity) && !(p.HasRole(warden.RoleOwner) && id.Owner == p.Subject) {
		return nil, false, warden.Errorf(warden.CodeForbidden, "lifting a throttle needs the security role or ownership of the identity")
	}
	v, ok := m.throttles.LoadAndDelete(id.ID)
	if ok {
		m.nThrottled.Add(-1)
		b := v.(*bucket)
		m.auditHuman(ctx, p, "breaker.reset", id.ID, reason, map[string]any{"finding_id": b.finding})
	}
	return id, ok, nil
}

// Trip is the human kill switch: it suspends the identity at once (its
// tokens stop working on the next request, pending approvals expire),
// records a critical manual_trip finding and audits it. p needs the
// security role or ownership of the identity (the registry decides).
func (m *Monitor) Trip(ctx context.Context, p warden.Principal, ref, reason string) (*identity.Identity, *Finding, error) {
	if err := checkReason(reason, true); err != nil {
		return nil, nil, err
	}
	if err := m.needIdentities(); err != nil {
		return nil, nil, err
	}
	id, err := m.o.Identities.Suspend(ctx, p, ref, clip("circuit breaker tripped by "+p.Actor()+": "+reason, 1024))
	if err != nil {
		return nil, nil, err
	}
	now := m.o.Now().UTC()
	f := &Finding{ID: warden.NewID(warden.PrefixFinding), IdentityID: id.ID, IdentityName: id.Name, Owner: id.Owner, Detector: DetManualTrip,
		Severity: Critical, Explanation: fmt.Sprintf("%s tripped the circuit breaker for %s: %s", p.Actor(), id.Name, reason),
		Evidence: map[string]any{"by": p.Actor()}, FirstEventAt: now, DetectedAt: now, ContainedAt: &now,
		ActionTaken: string(RespondSuspend), Status: StatusAcknowledged, AckedBy: p.Actor(), AckedAt: &now}
	m.store(ctx, f)
	m.auditHuman(ctx, p, "breaker.trip", id.ID, reason, map[string]any{"finding_id": f.ID, "identity_name": id.Name})
	if m.hook != nil {
		m.hook.notify(f)
	}
	m.findings.WithLabelValues(f.Detector, string(f.Severity)).Inc()
	return id, f, nil
}

// Selector picks identities for a pause: by owner, by labels (all must
// match), or both. At least one is required: pausing everything at once
// is a decision to take identity by identity or with a label.
type Selector struct {
	Owner  string
	Labels map[string]string
}

func (s Selector) validate() error {
	if s.Owner == "" && len(s.Labels) == 0 {
		return warden.FieldError("owner", "owner or labels is required (which identities to pause)")
	}
	if s.Owner != "" {
		if err := identity.ValidateOwner(s.Owner); err != nil {
			return err
		}
	}
	if len(s.Labels) > 16 {
		return warden.FieldError("labels", "at most 16 labels")
	}
	for k, v := range s.Labels {
		if k == "" || len(k) > 63 || len(v) > 256 || !printable(k) || !printable(v) {
			return warden.FieldError("labels", "label %q is not valid", clip(k, 64))
		}
	}
	return nil
}

func (s Selector) String() string {
	var parts []string
	if s.Owner != "" {
		parts = append(parts, "owner="+s.Owner)
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.Labels[k])
	}
	return strings.Join(parts, ",")
}

// PausePrefix starts the status reason of identities a pause suspended;
// Unpause resumes only those, never an identity suspended for another
// reason (a finding, a human's suspend).
const PausePrefix = "paused by the circuit breaker ("

// PauseResult lists what a pause or resume changed and what it skipped.
type PauseResult struct {
	Changed []*identity.Identity
	Skipped map[string]string // identity id -> why
}

// maxPause bounds how many identities one pause or resume touches.
const maxPause = 10000

// Pause suspends every active identity that s selects (security role).
func (m *Monitor) Pause(ctx context.Context, p warden.Principal, s Selector, reason string) (*PauseResult, error) {
	if !p.HasRole(warden.RoleSecurity) {
		return nil, warden.Errorf(warden.CodeForbidden, "pausing identities needs the security or admin role")
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if err := checkReason(reason, true); err != nil {
		return nil, err
	}
	ids, err := m.selectIDs(ctx, p, s, identity.StatusActive)
	if err != nil {
		return nil, err
	}
	res := &PauseResult{Skipped: map[string]string{}}
	why := clip(PausePrefix+s.String()+") by "+p.Actor()+": "+reason, 1024)
	for _, id := range ids {
		x, err := m.o.Identities.Suspend(ctx, p, id.ID, why)
		if err != nil {
			res.Skipped[id.ID] = errText(err)
			continue
		}
		res.Changed = append(res.Changed, x)
	}
	m.auditHuman(ctx, p, "breaker.pause", "", reason, map[string]any{"selector": s.String(), "paused": idsOf(res.Changed, 200), "skipped": len(res.Skipped)})
	return res, nil
}

// Unpause resumes the suspended identities s selects whose suspension
// came from a pause (security role).
func (m *Monitor) Unpause(ctx context.Context, p warden.Principal, s Selector, reason string) (*PauseResult, error) {
	if !p.HasRole(warden.RoleSecurity) {
		return nil, warden.Errorf(warden.CodeForbidden, "resuming paused identities needs the security or admin role")
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if err := checkReason(reason, false); err != nil {
		return nil, err
	}
	ids, err := m.selectIDs(ctx, p, s, identity.StatusSuspended)
	if err != nil {
		return nil, err
	}
	res := &PauseResult{Skipped: map[string]string{}}
	why := "pause lifted by " + p.Actor()
	if reason != "" {
		why = clip(why+": "+reason, 1024)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id.StatusReason, PausePrefix) {
			res.Skipped[id.ID] = "suspended for another reason: " + clip(id.StatusReason, 200)
			continue
		}
		x, err := m.o.Identities.Resume(ctx, p, id.ID, why)
		if err != nil {
			res.Skipped[id.ID] = errText(err)
			continue
		}
		res.Changed = append(res.Changed, x)
	}
	m.auditHuman(ctx, p, "breaker.resume", "", reason, map[string]any{"selector": s.String(), "resumed": idsOf(res.Changed, 200), "skipped": len(res.Skipped)})
	return res, nil
}

func (m *Monitor) needIdentities() error {
	if m.o.Identities == nil {
		return warden.Errorf(warden.CodeUnavailable, "the circuit breaker has no identity registry")
	}
	return nil
}

func (m *Monitor) selectIDs(ctx context.Context, p warden.Principal, s Selector, status string) ([]*identity.Identity, error) {
	if err := m.needIdentities(); err != nil {
		return nil, err
	}
	var out []*identity.Identity
	cursor := ""
	for {
		page, next, err := m.o.Identities.List(ctx, p, identity.Filter{Owner: s.Owner, Labels: s.Labels, Status: status, Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(out) > maxPause {
			return nil, warden.Errorf(warden.CodeInvalid, "the selector matches more than %d identities; narrow it", maxPause)
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

func idsOf(xs []*identity.Identity, n int) []string {
	out := make([]string, 0, min(len(xs), n))
	for _, x := range xs {
		if len(out) == n {
			break
		}
		out = append(out, x.ID)
	}
	return out
}

func errText(err error) string {
	if we, ok := err.(*warden.Error); ok {
		return string(we.Code) + ": " + we.Message
	}
	return string(warden.ErrorCode(err))
}

func checkReason(reason string, required bool) error {
	if required && strings.TrimSpace(reason) == "" {
		return warden.FieldError("reason", "is required")
	}
	if len(reason) > 900 || !printable(reason) {
		return warden.FieldError("reason", "must be at most 900 characters of printable text")
	}
	return nil
}
