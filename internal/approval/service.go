package approval

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"warden"
)

// Notifier tells humans about a new approval request. It must not block
// the caller for long; failures are retried by the notifier itself.
type Notifier interface {
	Notify(a *Approval)
}

// Options configure a Service.
type Options struct {
	Store Store
	// TTL is how long a request waits for a decision (default 1 hour).
	TTL time.Duration
	// MaxPending caps pending requests per identity (default 20); more are
	// refused with approval_quota.
	MaxPending int
	Notifier   Notifier
	Logger     *slog.Logger
	Now        func() time.Time
	// PollInterval is how often Wait looks for a decision (default 200ms).
	PollInterval time.Duration
}

// Service runs approvals.
type Service struct{ o Options }

// New returns an approvals service.
func New(o Options) *Service {
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	if o.MaxPending == 0 {
		o.MaxPending = 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PollInterval == 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o}
}

// RequestInput describes the call that needs a human.
type RequestInput struct {
	IdentityID, IdentityName, Owner string
	Action, Method, Path            string
	Resource                        map[string]any
	Fingerprint                     string
	Policy, Rule, Reason            string
	// From the rule's approval settings (zero values: defaults).
	Required   int
	Uses       int
	TTL        time.Duration
	Approvers  []string
	AllowOwner bool
}

// Request creates a pending approval for a call, unless the identity has
// too many pending already (approval_quota).
func (s *Service) Request(ctx context.Context, in RequestInput) (*Approval, error) {
	now := s.o.Now().UTC()
	n, err := s.o.Store.CountPending(ctx, in.IdentityID, now)
	if err != nil {
		return nil, err
	}
	if n >= s.o.MaxPending {
		return nil, warden.Errorf(warden.CodeApprovalQuota, "identity %s has %d approval requests pending; wait for decisions before asking again", in.IdentityName, n)
	}
	ttl := s.o.TTL
	if in.TTL > 0 {
		ttl = in.TTL
	}
	a := &Approval{
		ID: warden.NewID(warden.PrefixApproval), IdentityID: in.IdentityID, IdentityName: in.IdentityName, Owner: in.Owner,
		Action: in.Action, Method: in.Method, Path: in.Path, Resource: in.Resource, Fingerprint: in.Fingerprint,
		Policy: in.Policy, Rule: in.Rule, Reason: in.Reason, Status: StatusPending, UsesLeft: max(in.Uses, 1),
		Required: max(in.Required, 1), Approvers: in.Approvers, AllowOwner: in.AllowOwner,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := s.o.Store.CreateApproval(ctx, a); err != nil {
		return nil, err
	}
	if s.o.Notifier != nil {
		s.o.Notifier.Notify(a)
	}
	return a, nil
}

// effective applies lazy expiry: a pending or approved request past its
// expiry reads as expired.
func (s *Service) effective(a *Approval) *Approval {
	if (a.Status == StatusPending || a.Status == StatusApproved) && !s.o.Now().Before(a.ExpiresAt) {
		c := *a
		c.Status = StatusExpired
		return &c
	}
	return a
}

func (s *Service) get(ctx context.Context, id string) (*Approval, error) {
	if !warden.HasPrefix(id, warden.PrefixApproval) || len(id) > 64 {
		return nil, warden.Errorf(warden.CodeNotFound, "approval %q not found", clip(id))
	}
	a, err := s.o.Store.GetApproval(ctx, id)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "approval %q not found", clip(id))
	}
	if err != nil {
		return nil, err
	}
	return s.effective(a), nil
}

// Get returns an approval to an admin who may see approvals, or to the
// identity it belongs to.
func (s *Service) Get(ctx context.Context, p warden.Principal, id string) (*Approval, error) {
	a, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case p.Kind == warden.PrincipalIdentity && p.ID == a.IdentityID:
	case p.HasRole(warden.RoleApprover, warden.RoleSecurity, warden.RoleAuditor):
	case p.HasRole(warden.RoleOwner) && p.Subject == a.Owner:
	default:
		return nil, warden.Errorf(warden.CodeNotFound, "approval %q not found", clip(id))
	}
	return a, nil
}

// List returns approvals, newest first, optionally by status.
func (s *Service) List(ctx context.Context, p warden.Principal, status string, limit int) ([]*Approval, error) {
	identityID := ""
	switch {
	case p.HasRole(warden.RoleApprover, warden.RoleSecurity, warden.RoleAuditor):
	case p.Kind == warden.PrincipalIdentity:
		identityID = p.ID
	default:
		return nil, warden.Errorf(warden.CodeForbidden, "listing approvals needs the approver, security or auditor role")
	}
	switch status {
	case "", StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusUsed:
	default:
		return nil, warden.FieldError("status", "must be pending, approved, denied, expired or used")
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	// Expiry is lazy, so filter on the effective status.
	q := status
	if status == StatusExpired {
		q = ""
	}
	all, err := s.o.Store.ListApprovals(ctx, q, identityID, limit*2)
	if err != nil {
		return nil, err
	}
	out := make([]*Approval, 0, len(all))
	for _, a := range all {
		e := s.effective(a)
		if status != "" && e.Status != status {
			continue
		}
		out = append(out, e)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// mayDecide applies the rule's approver list: empty means the approver
// role; otherwise any listed role the principal holds (admin implies all),
// or the principal's own subject.
func mayDecide(p warden.Principal, a *Approval) bool {
	if !p.IsAdmin() {
		return false
	}
	if len(a.Approvers) == 0 {
		return p.HasRole(warden.RoleApprover)
	}
	for _, x := range a.Approvers {
		if slices.Contains(warden.Roles, x) {
			if p.HasRole(x) {
				return true
			}
		} else if p.Subject != "" && p.Subject == x {
			return true
		}
	}
	return false
}

// Decide approves or denies a pending request. Segregation of duties: only
// someone the rule names (default: the approver role) decides; nobody
// decides a request of an identity they own unless the rule allows it; a
// rule may require several distinct approvers (the request stays pending
// until enough approved; one denial ends it); racing deciders resolve to
// one outcome (the other gets a conflict).
func (s *Service) Decide(ctx context.Context, p warden.Principal, id string, approve bool, comment string) (*Approval, error) {
	if len(comment) > 2000 || strings.ContainsAny(comment, "\x00") {
		return nil, warden.FieldError("comment", "must be at most 2000 characters")
	}
	a, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !mayDecide(p, a) {
		if len(a.Approvers) == 0 {
			return nil, warden.Errorf(warden.CodeForbidden, "deciding approvals needs the approver role")
		}
		return nil, warden.Errorf(warden.CodeForbidden, "rule %s/%s names who may approve: %s", a.Policy, a.Rule, strings.Join(a.Approvers, ", "))
	}
	if !a.AllowOwner && p.Subject != "" && p.Subject == a.Owner {
		return nil, warden.Errorf(warden.CodeForbidden, "you own identity %s; someone else must decide its requests", a.IdentityName)
	}
	if a.Status != StatusPending {
		return nil, warden.Errorf(warden.CodeConflict, "approval %s is %s; only pending requests can be decided", a.ID, a.Status)
	}
	if approve && slices.Contains(a.ApprovedBy, p.Actor()) {
		return nil, warden.Errorf(warden.CodeConflict, "you already approved %s; it needs %d distinct approvers", a.ID, a.Required)
	}
	now := s.o.Now().UTC()
	next := *a
	next.ApprovedBy = slices.Clone(a.ApprovedBy)
	next.DecidedBy, next.Comment = p.Actor(), comment
	action := "approval.deny"
	switch {
	case !approve:
		next.Status, next.DecidedAt = StatusDenied, &now
	case len(a.ApprovedBy)+1 >= max(a.Required, 1):
		next.ApprovedBy = append(next.ApprovedBy, p.Actor())
		next.Status, next.DecidedAt, action = StatusApproved, &now, "approval.approve"
	default:
		next.ApprovedBy = append(next.ApprovedBy, p.Actor())
		action = "approval.approve_partial"
	}
	rec := warden.NewChange(p, action, "approval", a.ID, map[string]any{"identity": a.IdentityID, "action": a.Action, "comment": comment, "approvals": len(next.ApprovedBy), "required": a.Required})
	if err := s.o.Store.Transition(ctx, &next, StatusPending, a.UsesLeft, len(a.ApprovedBy), &rec); err != nil {
		if warden.IsCode(err, warden.CodeConflict) {
			return nil, warden.Errorf(warden.CodeConflict, "approval %s was decided by someone else first", a.ID)
		}
		return nil, err
	}
	return &next, nil
}

// Check reports whether approval id covers exactly this call by this
// identity and is approved, unexpired and unused. It does not consume it.
func (s *Service) Check(ctx context.Context, id, identityID, fingerprint string) (*Approval, error) {
	a, err := s.get(ctx, id)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeApprovalInvalid, "approval %s does not exist", clip(id))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case a.IdentityID != identityID:
		return nil, warden.Errorf(warden.CodeApprovalInvalid, "approval %s belongs to another identity", a.ID)
	case a.Fingerprint != fingerprint:
		return nil, warden.Errorf(warden.CodeApprovalInvalid, "approval %s was given for a different call (operation or arguments differ)", a.ID)
	case a.Status == StatusPending:
		return a, warden.Errorf(warden.CodeApprovalRequired, "approval %s is still pending", a.ID)
	case a.Status != StatusApproved || a.UsesLeft < 1:
		return nil, warden.Errorf(warden.CodeApprovalInvalid, "approval %s is %s", a.ID, a.Status)
	}
	return a, nil
}

// Consume uses an approved request once; exactly one of several racing
// retries succeeds.
func (s *Service) Consume(ctx context.Context, a *Approval) error {
	now := s.o.Now().UTC()
	next := *a
	next.UsesLeft--
	if next.UsesLeft <= 0 {
		next.Status, next.UsedAt = StatusUsed, &now
	}
	if err := s.o.Store.Transition(ctx, &next, StatusApproved, a.UsesLeft, len(a.ApprovedBy), nil); err != nil {
		if warden.IsCode(err, warden.CodeConflict) {
			return warden.Errorf(warden.CodeApprovalInvalid, "approval %s was already used", a.ID)
		}
		return err
	}
	return nil
}

// Wait blocks until approval id is decided, ctx ends or timeout passes, and
// returns its state then.
func (s *Service) Wait(ctx context.Context, id string, timeout time.Duration) (*Approval, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(s.o.PollInterval)
	defer tick.Stop()
	for {
		a, err := s.get(ctx, id)
		if err != nil || a.Status != StatusPending {
			return a, err
		}
		select {
		case <-ctx.Done():
			return a, nil
		case <-deadline.C:
			return a, nil
		case <-tick.C:
		}
	}
}

// IdentityStopped expires the pending and approved requests of an identity
// that was suspended or decommissioned: its approvals die with it.
func (s *Service) IdentityStopped(ctx context.Context, identityID string) error {
	_, err := s.o.Store.ExpirePending(ctx, identityID, s.o.Now().UTC())
	return err
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
