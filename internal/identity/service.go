package identity

import (
	"context"
	"strings"
	"sync"
	"time"

	"warden"
)

// Service is the registry: it validates input, enforces the lifecycle and
// decides who may do what to an identity.
type Service struct {
	store    Store
	now      func() time.Time
	onChange func(*Identity)
	// cache holds id -> *Identity as last written or read, so hot paths
	// (whoami, the gate) do not read the database per request. Entries are
	// replaced on every change here and refreshed by All (which shared
	// databases call every second).
	cache sync.Map
	// names maps name -> id; names never change, so entries never go stale.
	names sync.Map
}

// Options configures a Service.
type Options struct {
	Store Store
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnChange is called after every committed change with the new state, so
	// caches (authentication, policy subjects) see it on the next request.
	OnChange func(*Identity)
}

// New returns a registry over store.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnChange == nil {
		o.OnChange = func(*Identity) {}
	}
	return &Service{store: o.Store, now: o.Now, onChange: o.OnChange}
}

// CreateInput is what a caller supplies to create an identity.
type CreateInput struct {
	Name        string
	Type        string
	Owner       string
	Description string
	Environment string
	Labels      map[string]string
}

// Patch changes some fields; nil fields stay. Labels replaces all labels.
type Patch struct {
	Type        *string
	Owner       *string
	Description *string
	Environment *string
	Labels      *map[string]string
}

// canRead reports whether p may see identity id.
func canRead(p warden.Principal, id *Identity) bool {
	if p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover) {
		return true
	}
	return p.HasRole(warden.RoleOwner) && id.Owner == p.Subject
}

// canManage reports whether p may change identity id's definition.
func canManage(p warden.Principal, id *Identity) bool {
	if p.HasRole(warden.RoleAdmin) {
		return true
	}
	return p.HasRole(warden.RoleOwner) && id.Owner == p.Subject
}

// canChangeStatus reports whether p may suspend or resume id.
func canChangeStatus(p warden.Principal, id *Identity) bool {
	return p.HasRole(warden.RoleSecurity) || canManage(p, id)
}

// CanManage reports whether p may manage id's keys and definition. Other
// packages (authn, credentials) use it so the rule lives in one place.
func CanManage(p warden.Principal, id *Identity) bool { return canManage(p, id) }

var errForbidden = warden.Errorf(warden.CodeForbidden, "not allowed to manage this identity")

// Create registers a new identity, active from the start.
func (s *Service) Create(ctx context.Context, p warden.Principal, in CreateInput) (*Identity, error) {
	if !p.HasRole(warden.RoleAdmin, warden.RoleOwner) {
		return nil, warden.Errorf(warden.CodeForbidden, "creating identities needs the admin or owner role")
	}
	if !p.HasRole(warden.RoleAdmin) && in.Owner != p.Subject {
		return nil, warden.Errorf(warden.CodeForbidden, "an owner can only create identities they own (owner must be %q)", p.Subject)
	}
	now := s.now().UTC()
	id := &Identity{
		ID:              warden.NewID(warden.PrefixIdentity),
		Name:            in.Name,
		Type:            in.Type,
		Owner:           in.Owner,
		Description:     in.Description,
		Environment:     in.Environment,
		Labels:          in.Labels,
		Status:          StatusActive,
		StatusActor:     p.Actor(),
		StatusReason:    "created",
		StatusChangedAt: now,
		CreatedAt:       now,
		UpdatedAt:       now,
		Version:         1,
	}
	if id.Labels == nil {
		id.Labels = map[string]string{}
	}
	if err := validate(id); err != nil {
		return nil, err
	}
	first := StatusChange{Status: StatusActive, Reason: "created", Actor: p.Actor(), At: now}
	rec := warden.NewChange(p, "identity.create", "identity", id.ID, map[string]any{"name": id.Name, "type": id.Type, "owner": id.Owner})
	if err := s.store.CreateIdentity(ctx, id, first, rec); err != nil {
		if warden.IsCode(err, warden.CodeConflict) {
			return nil, &warden.Error{Code: warden.CodeConflict, Field: "name", Message: "an identity named " + quote(id.Name) + " already exists"}
		}
		return nil, err
	}
	s.changed(id)
	return id, nil
}

func quote(s string) string { return `"` + s + `"` }

// Get returns the identity named by ref (id or name) if p may see it.
// An identity p may not see is reported as not found, so its existence does
// not leak.
func (s *Service) Get(ctx context.Context, p warden.Principal, ref string) (*Identity, error) {
	id, err := s.lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !canRead(p, id) {
		return nil, notFound(ref)
	}
	return id, nil
}

// Lookup returns the identity named by ref without a permission check, for
// internal callers (authentication, the gate).
func (s *Service) Lookup(ctx context.Context, ref string) (*Identity, error) {
	return s.lookup(ctx, ref)
}

func notFound(ref string) error {
	return warden.Errorf(warden.CodeNotFound, "identity %q not found", ref)
}

func (s *Service) lookup(ctx context.Context, ref string) (*Identity, error) {
	if ref == "" || len(ref) > 128 {
		return nil, notFound(ref)
	}
	id, err := s.store.GetIdentity(ctx, ref)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, notFound(ref)
	}
	return id, err
}

// List returns a page of identities p may see. Owners see only their own.
func (s *Service) List(ctx context.Context, p warden.Principal, f Filter) ([]*Identity, string, error) {
	switch {
	case p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover):
	case p.HasRole(warden.RoleOwner):
		if f.Owner != "" && f.Owner != p.Subject {
			return nil, "", nil
		}
		f.Owner = p.Subject
	default:
		return nil, "", warden.Errorf(warden.CodeForbidden, "listing identities needs an admin role")
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, "", warden.FieldError("limit", "must be between 1 and 1000")
	}
	if f.Type != "" && !ValidType(f.Type) {
		return nil, "", warden.FieldError("type", "must be one of %s", strings.Join(Types, ", "))
	}
	switch f.Status {
	case "", StatusActive, StatusSuspended, StatusDecommissioned:
	default:
		return nil, "", warden.FieldError("status", "must be active, suspended or decommissioned")
	}
	for k := range f.Labels {
		if !warden.ValidLabelKey(k) {
			return nil, "", warden.FieldError("label", "label key %q is not valid", k)
		}
	}
	return s.store.ListIdentities(ctx, f)
}

// Update applies a patch. Decommissioned identities cannot change.
func (s *Service) Update(ctx context.Context, p warden.Principal, ref string, patch Patch) (*Identity, error) {
	return s.mutate(ctx, p, ref, "identity.update", func(id *Identity) (*StatusChange, error) {
		if !canManage(p, id) {
			return nil, errForbidden
		}
		if id.Status == StatusDecommissioned {
			return nil, warden.Errorf(warden.CodeConflict, "identity %q is decommissioned and cannot change", id.Name)
		}
		if patch.Type != nil {
			id.Type = *patch.Type
		}
		if patch.Owner != nil {
			if !p.HasRole(warden.RoleAdmin) && *patch.Owner != p.Subject {
				return nil, warden.Errorf(warden.CodeForbidden, "only an admin can hand an identity to another owner")
			}
			id.Owner = *patch.Owner
		}
		if patch.Description != nil {
			id.Description = *patch.Description
		}
		if patch.Environment != nil {
			id.Environment = *patch.Environment
		}
		if patch.Labels != nil {
			id.Labels = *patch.Labels
			if id.Labels == nil {
				id.Labels = map[string]string{}
			}
		}
		return nil, validate(id)
	})
}

// Suspend stops an identity: it cannot authenticate or act until resumed.
func (s *Service) Suspend(ctx context.Context, p warden.Principal, ref, reason string) (*Identity, error) {
	if err := validateReason(reason, true); err != nil {
		return nil, err
	}
	return s.setStatus(ctx, p, ref, StatusSuspended, reason, "identity.suspend")
}

// Resume reactivates a suspended identity.
func (s *Service) Resume(ctx context.Context, p warden.Principal, ref, reason string) (*Identity, error) {
	if err := validateReason(reason, false); err != nil {
		return nil, err
	}
	return s.setStatus(ctx, p, ref, StatusActive, reason, "identity.resume")
}

// Decommission ends an identity for good: its record and history stay, its
// keys and tokens die (callers revoke keys through authn, which listens to
// the change).
func (s *Service) Decommission(ctx context.Context, p warden.Principal, ref, reason string) (*Identity, error) {
	if err := validateReason(reason, false); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "decommissioned"
	}
	return s.setStatus(ctx, p, ref, StatusDecommissioned, reason, "identity.decommission")
}

// SuspendBySystem suspends an identity on Warden's own authority (the
// circuit breaker); actor names the component.
func (s *Service) SuspendBySystem(ctx context.Context, actor, ref, reason string) (*Identity, error) {
	sys := warden.Principal{Kind: warden.PrincipalAdmin, ID: actor, Roles: []string{warden.RoleSecurity}}
	return s.setStatus(ctx, sys, ref, StatusSuspended, reason, "identity.suspend")
}

func validateReason(reason string, required bool) error {
	if required && strings.TrimSpace(reason) == "" {
		return warden.FieldError("reason", "is required")
	}
	if len(reason) > 1024 || !printableText(reason) {
		return warden.FieldError("reason", "must be at most 1024 characters of printable text")
	}
	return nil
}

func (s *Service) setStatus(ctx context.Context, p warden.Principal, ref, status, reason, action string) (*Identity, error) {
	return s.mutate(ctx, p, ref, action, func(id *Identity) (*StatusChange, error) {
		allowed := canChangeStatus(p, id)
		if status == StatusDecommissioned {
			allowed = canManage(p, id)
		}
		if !allowed {
			return nil, errForbidden
		}
		switch {
		case id.Status == StatusDecommissioned:
			return nil, warden.Errorf(warden.CodeConflict, "identity %q is decommissioned; that is final", id.Name)
		case id.Status == status:
			return nil, warden.Errorf(warden.CodeConflict, "identity %q is already %s", id.Name, status)
		}
		now := s.now().UTC()
		id.Status, id.StatusReason, id.StatusActor, id.StatusChangedAt = status, reason, p.Actor(), now
		return &StatusChange{Status: status, Reason: reason, Actor: p.Actor(), At: now}, nil
	})
}

// mutate reads, applies fn, and writes with optimistic concurrency, retrying
// a few times when another writer got there first.
func (s *Service) mutate(ctx context.Context, p warden.Principal, ref, action string, fn func(*Identity) (*StatusChange, error)) (*Identity, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.lookup(ctx, ref)
		if err != nil {
			return nil, err
		}
		if !canRead(p, cur) && !p.HasRole(warden.RoleAdmin) {
			return nil, notFound(ref)
		}
		next := cur.Clone()
		change, err := fn(next)
		if err != nil {
			return nil, err
		}
		next.UpdatedAt = s.now().UTC()
		next.Version = cur.Version + 1
		detail := map[string]any{"name": next.Name}
		if change != nil {
			detail["status"] = change.Status
			detail["reason"] = change.Reason
		}
		rec := warden.NewChange(p, action, "identity", next.ID, detail)
		err = s.store.UpdateIdentity(ctx, next, cur.Version, change, rec)
		if warden.IsCode(err, warden.CodeConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.changed(next)
		return next, nil
	}
}

// History returns the status history of an identity p may see.
func (s *Service) History(ctx context.Context, p warden.Principal, ref string) ([]StatusChange, error) {
	id, err := s.Get(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	return s.store.StatusHistory(ctx, id.ID)
}

func (s *Service) changed(id *Identity) {
	s.remember(id)
	s.onChange(id.Clone())
}

// Cached returns the identity with the given id from memory, reading the
// store only on a miss. The result is a copy the caller may keep.
func (s *Service) Cached(ctx context.Context, id string) (*Identity, error) {
	if v, ok := s.cache.Load(id); ok {
		return v.(*Identity).Clone(), nil
	}
	if !warden.HasPrefix(id, warden.PrefixIdentity) {
		return nil, notFound(id)
	}
	got, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	s.remember(got)
	return got, nil
}

func (s *Service) remember(id *Identity) {
	s.cache.Store(id.ID, id.Clone())
	s.names.Store(id.Name, id.ID)
}

// Resolve returns the identity named by ref (id or name) from memory when it
// can, without a permission check (for the gate and authentication).
func (s *Service) Resolve(ctx context.Context, ref string) (*Identity, error) {
	if warden.HasPrefix(ref, warden.PrefixIdentity) {
		return s.Cached(ctx, ref)
	}
	if v, ok := s.names.Load(ref); ok {
		return s.Cached(ctx, v.(string))
	}
	got, err := s.lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	s.remember(got)
	return got, nil
}

// All returns every identity without permission checks, and refreshes the
// cache with what it read (other replicas' changes included).
func (s *Service) All(ctx context.Context) ([]*Identity, error) {
	all, err := s.store.AllIdentities(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range all {
		s.remember(id)
	}
	return all, nil
}
