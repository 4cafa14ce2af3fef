// Package elevation grants just-in-time permissions: an identity (or its
// owner) asks for extra actions for a while, a human approves, and a
// time-bound allow grant exists until it expires or is revoked. A grant is
// an ordinary policy (named elevation-<id>, with expires_at on its rule),
// so it is decided, explained and audited like any other.
package elevation

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"warden"
	"warden/internal/identity"
	"warden/internal/policy"
)

// Statuses.
const (
	StatusPending = "pending"
	StatusActive  = "active"
	StatusDenied  = "denied"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Elevation is a request for, and then the state of, a temporary grant.
type Elevation struct {
	ID           string
	IdentityID   string
	IdentityName string
	Owner        string
	Actions      []string
	Resources    map[string]string // optional: resource.<key> must equal the value
	Duration     time.Duration
	Reason       string
	RequestedBy  string
	Status       string
	CreatedAt    time.Time
	DecidedAt    *time.Time
	DecidedBy    string
	Comment      string
	ExpiresAt    *time.Time // set when approved
	RevokedAt    *time.Time
	RevokedBy    string
}

// PolicyName is the name of the grant's policy.
func (e *Elevation) PolicyName() string { return "elevation-" + strings.ToLower(e.ID) }

// Store persists elevations. Transition is a compare-and-set on status.
type Store interface {
	CreateElevation(ctx context.Context, e *Elevation, rec warden.Change) error
	GetElevation(ctx context.Context, id string) (*Elevation, error)
	ListElevations(ctx context.Context, status, identityID string) ([]*Elevation, error)
	TransitionElevation(ctx context.Context, e *Elevation, from string, rec *warden.Change) error
}

// Policies is what elevation needs of the policy service.
type Policies interface {
	Put(ctx context.Context, p warden.Principal, name string, body []byte, contentType string) (*policy.Stored, bool, error)
	Delete(ctx context.Context, p warden.Principal, name string) error
}

// Options configure a Service.
type Options struct {
	Store      Store
	Policies   Policies
	Identities *identity.Service
	// MaxDuration caps a grant (default 8 hours).
	MaxDuration time.Duration
	Now         func() time.Time
}

// Service runs elevations.
type Service struct{ o Options }

// New returns an elevation service.
func New(o Options) *Service {
	if o.MaxDuration == 0 {
		o.MaxDuration = 8 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o}
}

// system acts for Warden when it writes or removes grant policies.
var system = warden.Principal{Kind: warden.PrincipalAdmin, ID: "elevation", Subject: "warden", Roles: []string{warden.RoleSecurity}}

// RequestInput asks for a grant.
type RequestInput struct {
	Identity  string // id or name
	Actions   []string
	Resources map[string]string
	Duration  time.Duration
	Reason    string
}

// Request files an elevation. The identity may ask for itself; an admin
// who may manage the identity (its owner, or admin) may ask for it.
func (s *Service) Request(ctx context.Context, p warden.Principal, in RequestInput) (*Elevation, error) {
	id, err := s.o.Identities.Resolve(ctx, in.Identity)
	if err != nil {
		return nil, warden.FieldError("identity", "no such identity")
	}
	switch {
	case p.Kind == warden.PrincipalIdentity && p.ID == id.ID:
	case p.IsAdmin() && identity.CanManage(p, id):
	default:
		return nil, warden.Errorf(warden.CodeForbidden, "only the identity itself, its owner or an admin may ask for its elevation")
	}
	if id.Status != identity.StatusActive {
		return nil, warden.Errorf(warden.CodeConflict, "identity %s is %s", id.Name, id.Status)
	}
	if len(in.Actions) == 0 || len(in.Actions) > 50 {
		return nil, warden.FieldError("actions", "give 1 to 50 action patterns")
	}
	for i, a := range in.Actions {
		if !policy.ValidPattern(a) || a == "*" {
			return nil, warden.FieldError(fmt.Sprintf("actions[%d]", i), "must be a connector:operation pattern (and not everything)")
		}
	}
	for k, v := range in.Resources {
		if !resourceKeyOK(k) || len(v) > 256 || strings.ContainsAny(v, "\x00\n") {
			return nil, warden.FieldError("resources."+k, "keys are identifiers; values at most 256 characters")
		}
	}
	if in.Duration <= 0 || in.Duration > s.o.MaxDuration {
		return nil, warden.FieldError("duration", "must be between 1s and %s", s.o.MaxDuration)
	}
	if strings.TrimSpace(in.Reason) == "" || len(in.Reason) > 1000 {
		return nil, warden.FieldError("reason", "is required (at most 1000 characters)")
	}
	e := &Elevation{
		ID: warden.NewID("elv_"), IdentityID: id.ID, IdentityName: id.Name, Owner: id.Owner, Actions: in.Actions,
		Resources: in.Resources, Duration: in.Duration, Reason: in.Reason, RequestedBy: p.Actor(), Status: StatusPending,
		CreatedAt: s.o.Now().UTC(),
	}
	rec := warden.NewChange(p, "elevation.request", "elevation", e.ID, map[string]any{"identity": id.ID, "actions": in.Actions, "duration": in.Duration.String()})
	if err := s.o.Store.CreateElevation(ctx, e, rec); err != nil {
		return nil, err
	}
	return e, nil
}

func resourceKeyOK(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// effective applies lazy expiry.
func (s *Service) effective(e *Elevation) *Elevation {
	if e.Status == StatusActive && e.ExpiresAt != nil && !s.o.Now().Before(*e.ExpiresAt) {
		c := *e
		c.Status = StatusExpired
		return &c
	}
	return e
}

// Get returns an elevation to whoever may see it.
func (s *Service) Get(ctx context.Context, p warden.Principal, id string) (*Elevation, error) {
	e, err := s.o.Store.GetElevation(ctx, id)
	if err != nil {
		return nil, warden.Errorf(warden.CodeNotFound, "elevation %q not found", id)
	}
	switch {
	case p.Kind == warden.PrincipalIdentity && p.ID == e.IdentityID:
	case p.HasRole(warden.RoleApprover, warden.RoleSecurity, warden.RoleAuditor):
	case p.HasRole(warden.RoleOwner) && p.Subject == e.Owner:
	default:
		return nil, warden.Errorf(warden.CodeNotFound, "elevation %q not found", id)
	}
	return s.effective(e), nil
}

// List returns elevations p may see, optionally by status.
func (s *Service) List(ctx context.Context, p warden.Principal, status string) ([]*Elevation, error) {
	identityID := ""
	switch {
	case p.HasRole(warden.RoleApprover, warden.RoleSecurity, warden.RoleAuditor):
	case p.Kind == warden.PrincipalIdentity:
		identityID = p.ID
	default:
		return nil, warden.Errorf(warden.CodeForbidden, "listing elevations needs the approver, security or auditor role")
	}
	switch status {
	case "", StatusPending, StatusActive, StatusDenied, StatusRevoked, StatusExpired:
	default:
		return nil, warden.FieldError("status", "must be pending, active, denied, revoked or expired")
	}
	all, err := s.o.Store.ListElevations(ctx, "", identityID)
	if err != nil {
		return nil, err
	}
	var out []*Elevation
	for _, e := range all {
		e = s.effective(e)
		if status == "" || e.Status == status {
			out = append(out, e)
		}
	}
	return out, nil
}

// Decide approves (writing the grant policy) or denies a pending request.
// The same segregation of duties as approvals: the approver role, and never
// for an identity one owns.
func (s *Service) Decide(ctx context.Context, p warden.Principal, id string, approve bool, comment string) (*Elevation, error) {
	if !p.IsAdmin() || !p.HasRole(warden.RoleApprover) {
		return nil, warden.Errorf(warden.CodeForbidden, "deciding elevations needs the approver role")
	}
	e, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if p.Subject != "" && p.Subject == e.Owner {
		return nil, warden.Errorf(warden.CodeForbidden, "you own identity %s; someone else must decide its elevation", e.IdentityName)
	}
	if e.Status != StatusPending {
		return nil, warden.Errorf(warden.CodeConflict, "elevation %s is %s", e.ID, e.Status)
	}
	now := s.o.Now().UTC()
	next := *e
	next.DecidedAt, next.DecidedBy, next.Comment = &now, p.Actor(), comment
	action := "elevation.deny"
	next.Status = StatusDenied
	if approve {
		exp := now.Add(e.Duration)
		next.Status, next.ExpiresAt, action = StatusActive, &exp, "elevation.approve"
	}
	rec := warden.NewChange(p, action, "elevation", e.ID, map[string]any{"identity": e.IdentityID, "comment": comment})
	if err := s.o.Store.TransitionElevation(ctx, &next, StatusPending, &rec); err != nil {
		return nil, err
	}
	if approve {
		if err := s.writeGrant(ctx, &next, now); err != nil {
			// The grant could not be put in force: undo the approval so the
			// record never claims a grant that does not exist.
			undo := next
			undo.Status, undo.ExpiresAt = StatusDenied, nil
			undo.Comment = "grant could not be written: " + err.Error()
			_ = s.o.Store.TransitionElevation(ctx, &undo, StatusActive, nil)
			return nil, err
		}
	}
	return &next, nil
}

// writeGrant puts the grant in force as a policy: subject the identity,
// one allow rule with the actions, the resource constraints as a CEL
// condition, and not_before/expires_at bounding it in time.
func (s *Service) writeGrant(ctx context.Context, e *Elevation, start time.Time) error {
	when := ""
	keys := make([]string, 0, len(e.Resources))
	for k := range e.Resources {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conds []string
	for _, k := range keys {
		lit, _ := json.Marshal(e.Resources[k]) // a JSON string is a valid CEL string literal
		conds = append(conds, fmt.Sprintf("has(resource.%s) && resource.%s == %s", k, k, lit))
	}
	when = strings.Join(conds, " && ")
	rule := map[string]any{
		"id": "grant", "effect": "allow", "actions": e.Actions,
		"not_before": start.Format(time.RFC3339), "expires_at": e.ExpiresAt.UTC().Format(time.RFC3339),
		"description": "Just-in-time elevation " + e.ID + ": " + e.Reason,
	}
	if when != "" {
		rule["when"] = when
	}
	doc := map[string]any{
		"apiVersion": "warden/v1", "kind": "Policy", "name": e.PolicyName(),
		"description": "Elevation " + e.ID + " for " + e.IdentityName + ", approved by " + e.DecidedBy,
		"subjects":    []any{map[string]any{"identity": e.IdentityID}},
		"rules":       []any{rule},
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return warden.Wrap(err, warden.CodeInternal, "encoding grant")
	}
	_, _, err = s.o.Policies.Put(ctx, system, e.PolicyName(), body, "application/json")
	return err
}

// Revoke ends an active grant early (or withdraws a pending request).
func (s *Service) Revoke(ctx context.Context, p warden.Principal, id, reason string) (*Elevation, error) {
	e, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	allowed := p.HasRole(warden.RoleSecurity, warden.RoleApprover) || (p.Kind == warden.PrincipalIdentity && p.ID == e.IdentityID) || (p.HasRole(warden.RoleOwner) && p.Subject == e.Owner)
	if !allowed {
		return nil, warden.Errorf(warden.CodeForbidden, "not allowed to revoke this elevation")
	}
	if e.Status != StatusActive && e.Status != StatusPending {
		return nil, warden.Errorf(warden.CodeConflict, "elevation %s is %s", e.ID, e.Status)
	}
	now := s.o.Now().UTC()
	next := *e
	next.Status, next.RevokedAt, next.RevokedBy, next.Comment = StatusRevoked, &now, p.Actor(), reason
	rec := warden.NewChange(p, "elevation.revoke", "elevation", e.ID, map[string]any{"identity": e.IdentityID, "reason": reason})
	if err := s.o.Store.TransitionElevation(ctx, &next, e.Status, &rec); err != nil {
		return nil, err
	}
	if e.Status == StatusActive {
		if err := s.o.Policies.Delete(ctx, system, e.PolicyName()); err != nil && !warden.IsCode(err, warden.CodeNotFound) {
			return nil, err
		}
	}
	return &next, nil
}

// Sweep removes the policies of expired grants (they are already inert:
// their rule's expires_at has passed) and marks them expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	active, err := s.o.Store.ListElevations(ctx, StatusActive, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range active {
		if s.effective(e).Status != StatusExpired {
			continue
		}
		next := *e
		next.Status = StatusExpired
		if err := s.o.Store.TransitionElevation(ctx, &next, StatusActive, nil); err != nil {
			continue // another replica swept it
		}
		if err := s.o.Policies.Delete(ctx, system, e.PolicyName()); err != nil && !warden.IsCode(err, warden.CodeNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
