package gate

import (
	"context"
	"time"

	"warden"
	"warden/internal/approval"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/identity"
	"warden/internal/policy"
)

// Credentials resolves the credential that serves a call.
type Credentials interface {
	Resolve(ctx context.Context, connector, identityID string) (*credential.Material, error)
}

// Record is what the gate asks the audit log to keep. Kind is
// "operation.decided" (written and durable before anything is forwarded) or
// "operation.completed".
type Record struct {
	Kind         string
	Time         time.Time
	Actor        string // identity:<id>
	IdentityID   string
	Action       string
	Resource     map[string]any
	Decision     string // allow | deny | require_approval | error
	Code         string
	Policy       string
	Rule         string
	Reason       string
	ApprovalID   string
	CredentialID string
	Method       string
	Path         string
	ClientIP     string
	UserAgent    string
	RequestID    string
	BytesIn      int64
	BytesOut     int64
	Status       int
	Latency      time.Duration
	DecidedSeq   int64 // for completed events: the decided event's seq
	// Detail holds a front's facts about the outcome (completed events),
	// e.g. the database front's rows and statement fingerprint.
	Detail map[string]any
}

// Auditor makes records durable. Record must return only once the record is
// durable; an error means it is not, and the call must fail closed. Enqueue
// is for completed records, whose call already happened: it queues the
// record for the next durable commit (retried while the log cannot write)
// and returns without waiting, so the agent's connection is not held for a
// sync that protects nothing more.
type Auditor interface {
	Record(ctx context.Context, r Record) (seq int64, err error)
	Enqueue(ctx context.Context, r Record) error
}

// Observation is what the behaviour monitor sees of every governed call:
// once when decided (Status 0) and once when completed.
type Observation struct {
	Time       time.Time
	IdentityID string
	KeyID      string // the API key the caller's credential came from
	Action     string
	Class      string
	Decision   string // allow | deny | require_approval | error
	Code       string
	ClientIP   string
	UserAgent  string
	BytesIn    int64
	BytesOut   int64
	Status     int // upstream status; 0 for the decided observation
	Latency    time.Duration
	Completed  bool
}

// Observer receives observations. Observe must not block: it runs on the
// hot path (implementations enqueue and drop when full).
type Observer interface {
	Observe(o Observation)
}

// Call is one governed operation, as a front translated it.
type Call struct {
	Principal warden.Principal // an authenticated identity
	Connector *connector.Connector
	Op        *connector.Op
	// Resource is read-only from here on: the gate, the policy engine,
	// approvals and the audit log only read it, so a front may share one
	// map between calls (pgwire does, per analysed statement).
	Resource   map[string]any
	Params     map[string]any
	Context    map[string]any
	Method     string // upstream method
	Path       string // upstream path (rebuilt from the template)
	ClientIP   string
	UserAgent  string
	RequestID  string
	ApprovalID string
	BytesIn    int64
	// Detail, set by the front before Complete, is recorded in the
	// completed event (e.g. rows returned or affected).
	Detail map[string]any
}

// approve handles a require_approval decision. With an approval id it
// checks that the approval covers exactly this call, decides again as
// approved (deny rules and limits still apply) and consumes the approval;
// without one it files a new request. It reports whether the call may go
// on; otherwise v.Err says why (approval_required with v.Pending set,
// approval_invalid, approval_quota, ...).
func (g *Gate) approve(ctx context.Context, c *Call, v *Verdict) bool {
	if g.approvals == nil {
		v.Err = warden.Errorf(warden.CodeApprovalRequired, "%s", v.Decision.Reason)
		g.audit(ctx, v, string(policy.RequireApproval))
		return false
	}
	id := v.Identity
	fp := approval.Fingerprint(id.ID, c.Op.Action, c.Method, c.Path, c.Resource, c.Params)
	if c.ApprovalID == "" {
		in := approval.RequestInput{
			IdentityID: id.ID, IdentityName: id.Name, Owner: id.Owner, Action: c.Op.Action, Method: c.Method, Path: c.Path,
			Resource: c.Resource, Fingerprint: fp, Policy: v.Decision.Policy, Rule: v.Decision.Rule, Reason: v.Decision.Reason,
		}
		if spec := g.policies.ApprovalFor(v.Decision.Policy, v.Decision.Rule); spec != nil {
			in.Required, in.Uses, in.TTL, in.Approvers, in.AllowOwner = spec.Required, spec.Uses, spec.TTL, spec.Approvers, spec.AllowOwner
		}
		a, err := g.approvals.Request(ctx, in)
		if err != nil {
			v.Err = err
			g.audit(ctx, v, "deny")
			return false
		}
		v.Pending = a
		c.ApprovalID = a.ID
		v.Err = warden.Errorf(warden.CodeApprovalRequired, "%s; a human must approve it (approval %s)", v.Decision.Reason, a.ID)
		g.audit(ctx, v, string(policy.RequireApproval))
		return false
	}
	a, err := g.approvals.Check(ctx, c.ApprovalID, id.ID, fp)
	if err != nil {
		if warden.IsCode(err, warden.CodeApprovalRequired) {
			v.Pending = a
		}
		v.Err = err
		g.audit(ctx, v, "deny")
		return false
	}
	d, _, err := g.Decide(ctx, Question{
		Identity: id.ID, Action: c.Op.Action, Class: c.Op.Class, Resource: c.Resource, Params: c.Params, Context: c.Context,
		IP: c.ClientIP, Method: c.Method, Path: c.Path, Approved: true,
	})
	if err != nil {
		v.Err = warden.Wrap(err, warden.CodeUnavailable, "the gate could not decide; nothing was forwarded")
		g.audit(ctx, v, "error")
		return false
	}
	v.Decision = d
	if d.Effect != policy.Allow {
		v.Err = warden.Errorf(warden.Code(d.Code), "%s", d.Reason)
		g.audit(ctx, v, string(d.Effect))
		return false
	}
	if err := g.approvals.Consume(ctx, a); err != nil {
		v.Err = err
		g.audit(ctx, v, "deny")
		return false
	}
	return true
}

// Verdict is the gate's answer to Check. When Err is nil the call may go
// upstream with Credential injected; otherwise Err (a *warden.Error whose
// code is the decision code) says why not, and Decision says who decided.
type Verdict struct {
	Decision   policy.Decision
	Identity   *identity.Identity
	Credential *credential.Material
	DecidedSeq int64
	// Pending is the approval request a require_approval call is waiting
	// on (Err has code approval_required).
	Pending *approval.Approval
	Err     error
	start   time.Time
	call    *Call
}

// Check runs the pipeline: identity status, policy, limits, the approval
// hook, credential resolution, and the durable "decided" audit record. It
// fails closed: any step that cannot decide denies, and nothing may be
// forwarded unless Verdict.Err is nil.
func (g *Gate) Check(ctx context.Context, c *Call) *Verdict {
	v := &Verdict{start: g.now(), call: c}
	if g.throttle != nil {
		// The breaker's throttle is policy-independent and comes first: a
		// throttled identity's calls neither reach the policy (and its
		// limit counters) nor the upstream.
		if wait, reason, ok := g.throttle.Throttled(c.Principal.ID, v.start); ok {
			v.Decision = policy.Decision{Effect: policy.Deny, Code: policy.CodeRateLimited, Reason: reason, RetryAfter: wait}
			v.Err = warden.Errorf(warden.CodeRateLimited, "%s", reason)
			g.audit(ctx, v, string(policy.Deny))
			return v
		}
	}
	d, id, err := g.Decide(ctx, Question{
		Identity: c.Principal.ID, Action: c.Op.Action, Class: c.Op.Class,
		Resource: c.Resource, Params: c.Params, Context: c.Context,
		IP: c.ClientIP, Method: c.Method, Path: c.Path, SkipMatched: true,
	})
	if err != nil {
		v.Decision = policy.Decision{Effect: policy.Deny, Code: policy.Code(warden.CodeUnavailable), Reason: "the gate could not decide"}
		v.Err = warden.Wrap(err, warden.CodeUnavailable, "the gate could not decide; nothing was forwarded")
		g.audit(ctx, v, "error")
		return v
	}
	v.Decision, v.Identity = d, id
	switch d.Effect {
	case policy.Allow:
	case policy.RequireApproval:
		if !g.approve(ctx, c, v) {
			return v
		}
	default:
		v.Err = warden.Errorf(warden.Code(d.Code), "%s", d.Reason)
		g.audit(ctx, v, string(d.Effect))
		return v
	}
	if g.creds != nil && c.Connector.Doc.Auth.Type != "none" {
		m, err := g.creds.Resolve(ctx, c.Connector.Name, id.ID)
		if err != nil {
			code := warden.ErrorCode(err)
			if code != warden.CodeNoCredential {
				code = warden.CodeCredentialUnavailable
			}
			v.Err = warden.Wrap(err, code, errMessage(err))
			g.audit(ctx, v, "deny")
			return v
		}
		v.Credential = m
	}
	seq, err := g.audit(ctx, v, "allow")
	if err != nil {
		v.Err = warden.Wrap(err, warden.CodeAuditUnavailable, "the audit log cannot record this call; nothing was forwarded")
		v.Credential = nil
		return v
	}
	v.DecidedSeq = seq
	return v
}

func errMessage(err error) string {
	var we *warden.Error
	if ok := asWardenError(err, &we); ok && we.Message != "" {
		return we.Message
	}
	return "credential unavailable"
}

// audit writes the decided record. Denials are recorded too; their audit
// failure does not change the answer (it is already a refusal).
func (g *Gate) audit(ctx context.Context, v *Verdict, decision string) (int64, error) {
	g.observe(v, decision, false, 0, 0)
	if g.auditor == nil {
		return 0, warden.Errorf(warden.CodeAuditUnavailable, "no audit log configured")
	}
	c := v.call
	r := Record{
		Kind: "operation.decided", Time: v.start, Actor: c.Principal.Actor(), IdentityID: c.Principal.ID,
		Action: c.Op.Action, Resource: c.Resource, Decision: decision, Code: string(v.Decision.Code),
		Policy: v.Decision.Policy, Rule: v.Decision.Rule, Reason: v.Decision.Reason, ApprovalID: c.ApprovalID,
		Method: c.Method, Path: c.Path, ClientIP: c.ClientIP, UserAgent: c.UserAgent, RequestID: c.RequestID, BytesIn: c.BytesIn,
	}
	if v.Err != nil {
		r.Code = string(warden.ErrorCode(v.Err))
	}
	if v.Credential != nil {
		r.CredentialID = v.Credential.CredentialID
	}
	return g.auditor.Record(ctx, r)
}

func (g *Gate) observe(v *Verdict, decision string, completed bool, status int, bytesOut int64) {
	if g.observer == nil {
		return
	}
	c := v.call
	o := Observation{
		Time: g.now(), IdentityID: c.Principal.ID, KeyID: c.Principal.KeyID, Action: c.Op.Action, Class: c.Op.Class,
		Decision: decision, Code: string(v.Decision.Code), ClientIP: c.ClientIP, UserAgent: c.UserAgent,
		BytesIn: c.BytesIn, BytesOut: bytesOut, Status: status, Completed: completed,
	}
	if v.Err != nil {
		o.Code = string(warden.ErrorCode(v.Err))
	}
	if completed {
		o.Latency = o.Time.Sub(v.start)
	}
	g.observer.Observe(o)
}

// Complete records the outcome of a forwarded call.
func (g *Gate) Complete(ctx context.Context, v *Verdict, status int, bytesOut int64, err error) {
	if v.Err != nil {
		return
	}
	g.observe(v, "allow", true, status, bytesOut)
	if g.auditor == nil {
		return
	}
	c := v.call
	r := Record{
		Kind: "operation.completed", Time: g.now(), Actor: c.Principal.Actor(), IdentityID: c.Principal.ID,
		Action: c.Op.Action, Resource: c.Resource, Decision: "allow", Code: string(v.Decision.Code), Policy: v.Decision.Policy, Rule: v.Decision.Rule,
		Method: c.Method, Path: c.Path, ClientIP: c.ClientIP, RequestID: c.RequestID, BytesIn: c.BytesIn, BytesOut: bytesOut,
		Status: status, Latency: g.now().Sub(v.start), DecidedSeq: v.DecidedSeq, Detail: c.Detail,
	}
	if v.Credential != nil {
		r.CredentialID = v.Credential.CredentialID
	}
	if err != nil {
		r.Reason = err.Error()
	}
	if err := g.auditor.Enqueue(ctx, r); err != nil && g.log != nil {
		g.log.Error("audit: completed record lost", "request_id", c.RequestID, "err", err)
	}
}
