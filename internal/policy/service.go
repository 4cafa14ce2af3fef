package policy

import (
	"context"
	"sort"
	"sync"
	"time"

	"warden"
)

// Stored is one saved version of a policy document.
type Stored struct {
	Name        string
	Version     int64
	Document    []byte
	ContentType string
	UpdatedAt   time.Time
	UpdatedBy   string
	Deleted     bool
}

// Store persists policy documents and every version of them. PutPolicy
// assigns the next version (1 for a new name) atomically and returns it;
// DeletePolicy fails with CodeNotFound when the policy does not exist and
// keeps a deleted marker in the history. Writes record rec in the same
// transaction.
type Store interface {
	PutPolicy(ctx context.Context, p Stored, rec warden.Change) (version int64, err error)
	GetPolicy(ctx context.Context, name string) (Stored, error)
	ListPolicies(ctx context.Context) ([]Stored, error)
	DeletePolicy(ctx context.Context, name, actor string, at time.Time, rec warden.Change) error
	PolicyVersions(ctx context.Context, name string) ([]Stored, error)
}

// Service keeps the engine in step with the stored policies: a document is
// parsed and compiled before it is saved, so a failed replacement leaves the
// previous version in force; a saved one takes effect at once here and, on
// other replicas, at their next Reload.
type Service struct {
	store  Store
	engine *Engine
	now    func() time.Time

	mu       sync.Mutex       // serialises Put/Delete/Reload on this replica
	versions map[string]int64 // name -> version loaded into the engine
}

// NewService returns a service over store feeding engine. Call Reload before
// serving.
func NewService(store Store, engine *Engine) *Service {
	return &Service{store: store, engine: engine, now: time.Now, versions: map[string]int64{}}
}

// Engine returns the engine decisions run on.
func (s *Service) Engine() *Engine { return s.engine }

func canWrite(p warden.Principal) bool { return p.HasRole(warden.RoleSecurity) }

func canRead(p warden.Principal) bool {
	return p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover, warden.RoleOwner)
}

// Put parses, compiles and saves a policy under urlName. It returns the
// stored version and whether the policy is new.
func (s *Service) Put(ctx context.Context, p warden.Principal, urlName string, body []byte, contentType string) (*Stored, bool, error) {
	if !canWrite(p) {
		return nil, false, warden.Errorf(warden.CodeForbidden, "changing policies needs the admin or security role")
	}
	doc, err := Parse(body, contentType)
	if err != nil {
		return nil, false, err
	}
	if err := doc.CheckName(urlName); err != nil {
		return nil, false, err
	}
	compiled, err := Compile(doc)
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stored{Name: urlName, Document: body, ContentType: doc.ContentType(), UpdatedAt: s.now().UTC(), UpdatedBy: p.Actor()}
	rec := warden.NewChange(p, "policy.put", "policy", urlName, map[string]any{"rules": len(doc.Rules)})
	v, err := s.store.PutPolicy(ctx, st, rec)
	if err != nil {
		return nil, false, err
	}
	st.Version = v
	s.engine.Put(compiled)
	s.versions[urlName] = v
	return &st, v == 1, nil
}

// Get returns the stored policy.
func (s *Service) Get(ctx context.Context, p warden.Principal, name string) (*Stored, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading policies needs an admin role")
	}
	if !ValidName(name) {
		return nil, warden.Errorf(warden.CodeNotFound, "policy %q not found", name)
	}
	st, err := s.store.GetPolicy(ctx, name)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "policy %q not found", name)
	}
	return &st, err
}

// List returns every policy in force, by name.
func (s *Service) List(ctx context.Context, p warden.Principal) ([]Stored, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading policies needs an admin role")
	}
	return s.store.ListPolicies(ctx)
}

// Versions returns a policy's history, oldest first.
func (s *Service) Versions(ctx context.Context, p warden.Principal, name string) ([]Stored, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading policies needs an admin role")
	}
	vs, err := s.store.PolicyVersions(ctx, name)
	if err == nil && len(vs) == 0 {
		return nil, warden.Errorf(warden.CodeNotFound, "policy %q not found", name)
	}
	return vs, err
}

// Delete removes a policy from force (its history stays).
func (s *Service) Delete(ctx context.Context, p warden.Principal, name string) error {
	if !canWrite(p) {
		return warden.Errorf(warden.CodeForbidden, "changing policies needs the admin or security role")
	}
	if !ValidName(name) {
		return warden.Errorf(warden.CodeNotFound, "policy %q not found", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := warden.NewChange(p, "policy.delete", "policy", name, nil)
	if err := s.store.DeletePolicy(ctx, name, p.Actor(), s.now().UTC(), rec); err != nil {
		if warden.IsCode(err, warden.CodeNotFound) {
			return warden.Errorf(warden.CodeNotFound, "policy %q not found", name)
		}
		return err
	}
	s.engine.Delete(name)
	delete(s.versions, name)
	return nil
}

// Reload brings the engine in step with the store: new and changed policies
// are compiled and put, removed ones deleted, unchanged ones kept (their
// compiled form and rate-limit counters stay). A stored document that no
// longer compiles (e.g. after an upgrade) is skipped and reported; the rest
// load.
func (s *Service) Reload(ctx context.Context) error {
	all, err := s.store.ListPolicies(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var firstErr error
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	for _, st := range all {
		seen[st.Name] = true
		if s.versions[st.Name] == st.Version {
			continue
		}
		doc, err := Parse(st.Document, st.ContentType)
		if err == nil {
			err = doc.CheckName(st.Name)
		}
		var c *Policy
		if err == nil {
			c, err = Compile(doc)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = warden.Wrap(err, warden.CodeInternal, "stored policy "+st.Name+" does not compile")
			}
			continue
		}
		s.engine.Put(c)
		s.versions[st.Name] = st.Version
	}
	for name := range s.versions {
		if !seen[name] {
			s.engine.Delete(name)
			delete(s.versions, name)
		}
	}
	return firstErr
}
