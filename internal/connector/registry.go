package connector

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"warden"
)

// Stored is a saved connector document.
type Stored struct {
	Name        string
	Version     int64
	Document    []byte
	ContentType string
	UpdatedAt   time.Time
	UpdatedBy   string
}

// Store persists connector documents. PutConnector assigns the next version
// and returns it; DeleteConnector fails with CodeNotFound when absent.
// Writes record rec in the same transaction.
type Store interface {
	PutConnector(ctx context.Context, c Stored, rec warden.Change) (int64, error)
	GetConnector(ctx context.Context, name string) (Stored, error)
	ListConnectors(ctx context.Context) ([]Stored, error)
	DeleteConnector(ctx context.Context, name string, rec warden.Change) error
}

// Registry holds the compiled connectors in force (an immutable map swapped
// atomically) and manages their documents.
type Registry struct {
	store   Store
	catalog *Catalog
	now     func() time.Time

	mu       sync.Mutex
	versions map[string]int64
	snap     atomic.Pointer[map[string]*Connector]
}

// NewRegistry returns a registry. Call Reload before serving.
func NewRegistry(store Store, catalog *Catalog) *Registry {
	r := &Registry{store: store, catalog: catalog, now: time.Now, versions: map[string]int64{}}
	empty := map[string]*Connector{}
	r.snap.Store(&empty)
	return r
}

// Get returns the compiled connector in force.
func (r *Registry) Get(name string) (*Connector, bool) {
	c, ok := (*r.snap.Load())[name]
	return c, ok
}

// All returns the connectors in force, by name.
func (r *Registry) All() []*Connector {
	m := *r.snap.Load()
	out := make([]*Connector, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *Registry) swap(fn func(m map[string]*Connector)) {
	old := *r.snap.Load()
	next := make(map[string]*Connector, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	fn(next)
	r.snap.Store(&next)
}

// Build parses, resolves from_catalog and compiles a document.
func (r *Registry) Build(body []byte, contentType, urlName string) (*Connector, error) {
	d, err := Parse(body, contentType)
	if err != nil {
		return nil, err
	}
	if d.FromCatalog != "" {
		if r.catalog == nil {
			return nil, warden.FieldError("from_catalog", "no catalog available")
		}
		if d, err = r.catalog.Instantiate(d); err != nil {
			return nil, err
		}
	}
	return Compile(d, urlName)
}

func canWrite(p warden.Principal) bool { return p.HasRole(warden.RoleSecurity) }
func canRead(p warden.Principal) bool {
	return p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover, warden.RoleOwner)
}

// Put validates and saves a connector; it is in force on return.
func (r *Registry) Put(ctx context.Context, p warden.Principal, urlName string, body []byte, contentType string) (*Stored, bool, error) {
	if !canWrite(p) {
		return nil, false, warden.Errorf(warden.CodeForbidden, "changing connectors needs the admin or security role")
	}
	c, err := r.Build(body, contentType, urlName)
	if err != nil {
		return nil, false, err
	}
	if contentType == "" {
		contentType = "application/yaml"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stored{Name: c.Name, Document: body, ContentType: contentType, UpdatedAt: r.now().UTC(), UpdatedBy: p.Actor()}
	rec := warden.NewChange(p, "connector.put", "connector", c.Name, map[string]any{"base_url": c.Base.String(), "operations": len(c.Doc.Operations)})
	v, err := r.store.PutConnector(ctx, st, rec)
	if err != nil {
		return nil, false, err
	}
	st.Version = v
	r.versions[c.Name] = v
	r.swap(func(m map[string]*Connector) { m[c.Name] = c })
	return &st, v == 1, nil
}

// GetStored returns a saved document.
func (r *Registry) GetStored(ctx context.Context, p warden.Principal, name string) (*Stored, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading connectors needs an admin role")
	}
	st, err := r.store.GetConnector(ctx, name)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "connector %q not found", name)
	}
	return &st, err
}

// CheckRead fails unless p may read connector definitions.
func CheckRead(p warden.Principal) error {
	if !canRead(p) {
		return warden.Errorf(warden.CodeForbidden, "reading connectors needs an admin role")
	}
	return nil
}

// Delete removes a connector; calls through it fail from the next request.
func (r *Registry) Delete(ctx context.Context, p warden.Principal, name string) error {
	if !canWrite(p) {
		return warden.Errorf(warden.CodeForbidden, "changing connectors needs the admin or security role")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := warden.NewChange(p, "connector.delete", "connector", name, nil)
	if err := r.store.DeleteConnector(ctx, name, rec); err != nil {
		if warden.IsCode(err, warden.CodeNotFound) {
			return warden.Errorf(warden.CodeNotFound, "connector %q not found", name)
		}
		return err
	}
	delete(r.versions, name)
	r.swap(func(m map[string]*Connector) { delete(m, name) })
	return nil
}

// Reload brings the registry in step with the store (start-up, and other
// replicas' changes on a shared database). Documents that no longer compile
// are skipped and reported.
func (r *Registry) Reload(ctx context.Context) error {
	all, err := r.store.ListConnectors(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var firstErr error
	seen := map[string]bool{}
	changed := map[string]*Connector{}
	for _, st := range all {
		seen[st.Name] = true
		if r.versions[st.Name] == st.Version {
			continue
		}
		c, err := r.Build(st.Document, st.ContentType, st.Name)
		if err != nil {
			if firstErr == nil {
				firstErr = warden.Wrap(err, warden.CodeInternal, "stored connector "+st.Name+" does not compile")
			}
			continue
		}
		changed[st.Name] = c
		r.versions[st.Name] = st.Version
	}
	var removed []string
	for name := range r.versions {
		if !seen[name] {
			removed = append(removed, name)
			delete(r.versions, name)
		}
	}
	if len(changed) > 0 || len(removed) > 0 {
		r.swap(func(m map[string]*Connector) {
			for k, v := range changed {
				m[k] = v
			}
			for _, k := range removed {
				delete(m, k)
			}
		})
	}
	return firstErr
}
