package credential

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"warden"
)

// Sealer seals and opens secrets under associated data (internal/seal's
// Keyring).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// Material is an unsealed credential ready for injection. Fields hold the
// type's secret fields.
type Material struct {
	CredentialID string
	Name         string
	Type         string
	Version      int64
	Fields       map[string]warden.Secret
	Config       map[string]any
}

// Options configure a Service.
type Options struct {
	Store  Store
	Sealer Sealer
	Now    func() time.Time
	// CacheTTL bounds how long an unsealed credential stays in memory
	// (default one minute). Local changes drop the cache at once.
	CacheTTL time.Duration
}

// Service manages credentials and resolves them for calls.
type Service struct {
	o        Options
	cache    sync.Map // connector "\x00" identityID -> *cached
	lastUsed sync.Map // credential id -> *atomic.Int64 (unix micros)
}

type cached struct {
	m       *Material
	expires int64 // unix nanos
}

// New returns a vault service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	return &Service{o: o}
}

// aad binds a ciphertext to its credential and version: copied to another
// row or version, it does not open.
func aad(id string, version int64) []byte {
	return []byte("credential:" + id + ":v" + strconv.FormatInt(version, 10))
}

func (s *Service) seal(id string, version int64, fields map[string]string) ([]byte, error) {
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "encoding secret")
	}
	ct, err := s.o.Sealer.Seal(b, aad(id, version))
	clear(b)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "sealing secret")
	}
	return ct, nil
}

// CreateInput creates a credential. Secret holds the type's fields.
type CreateInput struct {
	Name        string
	Type        string
	Connector   string
	Identity    string // identity id the credential is bound to; "" = every identity
	Owner       string
	Description string
	Config      map[string]any
	Rotation    time.Duration
	ExpiresAt   *time.Time
	Secret      map[string]string
}

func canWrite(p warden.Principal) bool { return p.HasRole(warden.RoleSecurity) }
func canRead(p warden.Principal) bool {
	return p.HasRole(warden.RoleSecurity, warden.RoleAuditor)
}

var errWrite = warden.Errorf(warden.CodeForbidden, "managing credentials needs the admin or security role")

// Create stores a new credential, sealed.
func (s *Service) Create(ctx context.Context, p warden.Principal, in CreateInput) (*Credential, error) {
	if !canWrite(p) {
		return nil, errWrite
	}
	if !ValidName(in.Name) {
		return nil, warden.FieldError("name", "must be 1-128 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if !ValidName(in.Connector) {
		return nil, warden.FieldError("connector", "is required: the connector this credential serves")
	}
	if err := validateSecret(in.Type, in.Secret); err != nil {
		return nil, err
	}
	if in.Rotation < 0 {
		return nil, warden.FieldError("rotation.every", "must be positive")
	}
	if err := checkConfig(in.Config); err != nil {
		return nil, err
	}
	now := s.o.Now().UTC()
	c := &Credential{
		ID: warden.NewID(warden.PrefixCredential), Name: in.Name, Type: in.Type, Connector: in.Connector,
		IdentityID: in.Identity, Owner: in.Owner, Description: in.Description, Config: in.Config,
		Rotation: in.Rotation, ExpiresAt: in.ExpiresAt, Version: 1, CreatedAt: now, CreatedBy: p.Actor(),
		UpdatedAt: now, RotatedAt: now,
	}
	ct, err := s.seal(c.ID, 1, in.Secret)
	if err != nil {
		return nil, err
	}
	rec := warden.NewChange(p, "credential.create", "credential", c.ID, map[string]any{"name": c.Name, "type": c.Type, "connector": c.Connector, "identity": c.IdentityID})
	if err := s.o.Store.CreateCredential(ctx, c, Sealed{CredentialID: c.ID, Version: 1, Ciphertext: ct, CreatedAt: now}, rec); err != nil {
		if warden.IsCode(err, warden.CodeConflict) {
			return nil, warden.Errorf(warden.CodeConflict, "a credential named %q, or one for connector %q and the same identity, already exists", c.Name, c.Connector)
		}
		return nil, err
	}
	s.Purge()
	return c, nil
}

// checkConfig refuses secrets hidden in non-secret settings, e.g. a URL
// with an embedded password.
func checkConfig(cfg map[string]any) error {
	for k, v := range cfg {
		sv, ok := v.(string)
		if !ok {
			continue
		}
		if hasURLPassword(sv) {
			return warden.FieldError("config."+k, "contains a URL with an embedded password; put secrets in the secret object")
		}
	}
	return nil
}

// Get returns a credential's metadata.
func (s *Service) Get(ctx context.Context, p warden.Principal, name string) (*Credential, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading credentials needs the admin, security or auditor role")
	}
	c, err := s.o.Store.GetCredential(ctx, name)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "credential %q not found", name)
	}
	return c, err
}

// List returns credential metadata, optionally for one connector.
func (s *Service) List(ctx context.Context, p warden.Principal, connector string) ([]*Credential, error) {
	if !canRead(p) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading credentials needs the admin, security or auditor role")
	}
	return s.o.Store.ListCredentials(ctx, connector)
}

// Patch changes metadata; nil fields stay.
type Patch struct {
	Owner       *string
	Description *string
	Rotation    *time.Duration
	ExpiresAt   **time.Time
	Config      *map[string]any
}

// Update applies a metadata patch.
func (s *Service) Update(ctx context.Context, p warden.Principal, name string, patch Patch) (*Credential, error) {
	if !canWrite(p) {
		return nil, errWrite
	}
	c, err := s.Get(ctx, p, name)
	if err != nil {
		return nil, err
	}
	next := *c
	if patch.Owner != nil {
		next.Owner = *patch.Owner
	}
	if patch.Description != nil {
		next.Description = *patch.Description
	}
	if patch.Rotation != nil {
		if *patch.Rotation < 0 {
			return nil, warden.FieldError("rotation.every", "must be positive")
		}
		next.Rotation = *patch.Rotation
	}
	if patch.ExpiresAt != nil {
		next.ExpiresAt = *patch.ExpiresAt
	}
	if patch.Config != nil {
		if err := checkConfig(*patch.Config); err != nil {
			return nil, err
		}
		next.Config = *patch.Config
	}
	next.UpdatedAt = s.o.Now().UTC()
	rec := warden.NewChange(p, "credential.update", "credential", c.ID, map[string]any{"name": c.Name})
	if err := s.o.Store.UpdateCredential(ctx, &next, c.Version, nil, rec); err != nil {
		return nil, err
	}
	s.Purge()
	return &next, nil
}

// Rotate stores a new secret version; calls use it from the next request.
func (s *Service) Rotate(ctx context.Context, p warden.Principal, name string, secret map[string]string) (*Credential, error) {
	if !canWrite(p) {
		return nil, errWrite
	}
	c, err := s.Get(ctx, p, name)
	if err != nil {
		return nil, err
	}
	if err := validateSecret(c.Type, secret); err != nil {
		return nil, err
	}
	next := *c
	next.Version = c.Version + 1
	now := s.o.Now().UTC()
	next.UpdatedAt, next.RotatedAt = now, now
	ct, err := s.seal(c.ID, next.Version, secret)
	if err != nil {
		return nil, err
	}
	rec := warden.NewChange(p, "credential.rotate", "credential", c.ID, map[string]any{"name": c.Name, "version": next.Version})
	if err := s.o.Store.UpdateCredential(ctx, &next, c.Version, &Sealed{CredentialID: c.ID, Version: next.Version, Ciphertext: ct, CreatedAt: now}, rec); err != nil {
		return nil, err
	}
	s.Purge()
	return &next, nil
}

// Delete removes a credential; calls that relied on it are denied
// no_credential from the next request.
func (s *Service) Delete(ctx context.Context, p warden.Principal, name string) error {
	if !canWrite(p) {
		return errWrite
	}
	c, err := s.Get(ctx, p, name)
	if err != nil {
		return err
	}
	rec := warden.NewChange(p, "credential.delete", "credential", c.ID, map[string]any{"name": c.Name})
	if err := s.o.Store.DeleteCredential(ctx, c.ID, rec); err != nil {
		return err
	}
	s.Purge()
	return nil
}

// Purge drops every unsealed credential from memory.
func (s *Service) Purge() { s.cache.Clear() }

// ErrNoCredential is returned by Resolve when no credential serves the call.
var ErrNoCredential = warden.Errorf(warden.CodeNoCredential, "no credential is configured for this connector and identity")

// Resolve returns the credential material that serves connector for
// identityID: the identity's own binding first, then the connector default.
// Unsealed material is cached for at most CacheTTL. Errors: ErrNoCredential
// (code no_credential), or CodeUnavailable when the store or the keyring
// fails (the call must fail closed).
func (s *Service) Resolve(ctx context.Context, connector, identityID string) (*Material, error) {
	key := connector + "\x00" + identityID
	now := s.o.Now()
	if v, ok := s.cache.Load(key); ok {
		c := v.(*cached)
		if now.UnixNano() < c.expires {
			s.touch(c.m.CredentialID, now)
			return c.m, nil
		}
	}
	cred, err := s.o.Store.BindingFor(ctx, connector, identityID)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, ErrNoCredential
	}
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "credential store unavailable")
	}
	if cred.ExpiresAt != nil && now.After(*cred.ExpiresAt) {
		return nil, warden.Errorf(warden.CodeNoCredential, "credential %s expired at %s", cred.Name, cred.ExpiresAt.Format(time.RFC3339))
	}
	sealed, err := s.o.Store.SealedVersion(ctx, cred.ID, cred.Version)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "credential store unavailable")
	}
	plain, err := s.o.Sealer.Open(sealed.Ciphertext, aad(cred.ID, cred.Version))
	if err != nil {
		// Tampered or mis-copied ciphertext: refuse, never inject garbage.
		return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+" cannot be opened")
	}
	var fields map[string]string
	err = json.Unmarshal(plain, &fields)
	clear(plain)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+" is damaged")
	}
	m := &Material{CredentialID: cred.ID, Name: cred.Name, Type: cred.Type, Version: cred.Version, Config: cred.Config, Fields: make(map[string]warden.Secret, len(fields))}
	for k, v := range fields {
		m.Fields[k] = warden.NewSecret(v)
	}
	s.cache.Store(key, &cached{m: m, expires: now.Add(s.o.CacheTTL).UnixNano()})
	s.touch(cred.ID, now)
	return m, nil
}

func (s *Service) touch(id string, now time.Time) {
	v, ok := s.lastUsed.Load(id)
	if !ok {
		v, _ = s.lastUsed.LoadOrStore(id, new(atomic.Int64))
	}
	c := v.(*atomic.Int64)
	if t := now.UnixMicro(); t-c.Load() > int64(time.Second/time.Microsecond) {
		c.Store(t)
	}
}

// FlushLastUsed writes recorded last-used times to the store.
func (s *Service) FlushLastUsed(ctx context.Context) error {
	at := map[string]int64{}
	s.lastUsed.Range(func(k, v any) bool {
		if t := v.(*atomic.Int64).Swap(0); t != 0 {
			at[k.(string)] = t
		}
		return true
	})
	return s.o.Store.TouchCredentials(ctx, at)
}
