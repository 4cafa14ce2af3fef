// Package gate is the decision pipeline every front door shares: it resolves
// the identity, refuses suspended and decommissioned ones before any policy,
// and asks the policy engine. It knows nothing of HTTP; fronts translate
// their protocol into a Question and the Decision back.
package gate

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"warden"
	"warden/internal/approval"
	"warden/internal/identity"
	"warden/internal/policy"
)

// Options are the gate's dependencies.
type Options struct {
	Identities  *identity.Service
	Policies    *policy.Engine
	Credentials Credentials
	Auditor     Auditor
	Approvals   *approval.Service
	Observer    Observer
	// Throttle, when set, is consulted before any policy (the behaviour
	// monitor's circuit breaker); a throttled call is denied rate_limited.
	Throttle Throttle
	Logger   *slog.Logger
	Now      func() time.Time
}

// Throttle says whether an identity is throttled now, and if so how long
// to wait and why. It runs on the hot path: it must be cheap and must not
// block.
type Throttle interface {
	Throttled(identityID string, now time.Time) (retryAfter time.Duration, reason string, throttled bool)
}

// Gate decides.
type Gate struct {
	ids       *identity.Service
	policies  *policy.Engine
	creds     Credentials
	auditor   Auditor
	approvals *approval.Service
	observer  Observer
	throttle  Throttle
	log       *slog.Logger
	now       func() time.Time
}

// New returns a gate.
func New(o Options) *Gate {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Gate{ids: o.Identities, policies: o.Policies, creds: o.Credentials, auditor: o.Auditor, approvals: o.Approvals, observer: o.Observer, throttle: o.Throttle, log: o.Logger, now: o.Now}
}

// Question is one operation to decide.
type Question struct {
	// Identity is an id or a name.
	Identity string
	Action   string
	Class    string
	Resource map[string]any
	Params   map[string]any
	Context  map[string]any
	// Time, IP, Method and Path describe the request (zero Time: now).
	Time     time.Time
	IP       string
	Method   string
	Path     string
	Approved bool
	DryRun   bool
	Explain  bool
	// SkipMatched: the caller needs only the deciding rule (hot path).
	SkipMatched bool
}

// Identity-status decision codes, decided before any policy.
const (
	CodeUnknownIdentity        policy.Code = "unknown_identity"
	CodeIdentitySuspended      policy.Code = "identity_suspended"
	CodeIdentityDecommissioned policy.Code = "identity_decommissioned"
)

// Decide answers q. An error means the gate could not decide (e.g. the
// database is unreachable for an identity not in memory); callers must treat
// it as deny.
func (g *Gate) Decide(ctx context.Context, q Question) (policy.Decision, *identity.Identity, error) {
	id, err := g.ids.Resolve(ctx, q.Identity)
	if warden.IsCode(err, warden.CodeNotFound) {
		return policy.Decision{Effect: policy.Deny, Code: CodeUnknownIdentity, Reason: "unknown identity " + quote(q.Identity)}, nil, nil
	}
	if err != nil {
		return policy.Decision{}, nil, err
	}
	switch id.Status {
	case identity.StatusSuspended:
		return policy.Decision{Effect: policy.Deny, Code: CodeIdentitySuspended, Reason: "identity " + id.Name + " is suspended: " + id.StatusReason}, id, nil
	case identity.StatusDecommissioned:
		return policy.Decision{Effect: policy.Deny, Code: CodeIdentityDecommissioned, Reason: "identity " + id.Name + " is decommissioned"}, id, nil
	}
	req := &policy.Request{
		Identity: policy.Identity{ID: id.ID, Name: id.Name, Type: id.Type, Owner: id.Owner, Environment: id.Environment, Labels: id.Labels},
		Action:   q.Action, Class: q.Class, Resource: q.Resource, Params: q.Params, Context: q.Context,
		Time: q.Time, IP: q.IP, Method: q.Method, Path: q.Path,
		Approved: q.Approved, DryRun: q.DryRun, Explain: q.Explain, SkipMatched: q.SkipMatched,
	}
	return g.policies.Decide(ctx, req), id, nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + s + `"`
}

func asWardenError(err error, target **warden.Error) bool { return errors.As(err, target) }
