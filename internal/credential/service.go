package credential

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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
// type's secret fields; for OAuth types the single field "token" (the
// current access token, injected as "Authorization: Bearer <token>"); for
// postgres_dynamic "username" and "password" of the leased role, with the
// whole lease in Lease. Material is shared between callers: never modify it.
type Material struct {
	CredentialID string
	Name         string
	Type         string
	Version      int64
	Fields       map[string]warden.Secret
	Config       map[string]any
	// ExpiresAt is when the material stops working (access token or lease
	// expiry); zero when it does not expire by itself.
	ExpiresAt time.Time
	// Lease is set for postgres_dynamic.
	Lease *Lease
}

// Options configure a Service.
type Options struct {
	Store Store
	// Leases stores dynamic-credential leases; when nil, Store is used if
	// it implements LeaseStore. Without one, postgres_dynamic credentials
	// fail with credential_unavailable.
	Leases LeaseStore
	Sealer Sealer
	Now    func() time.Time
	Logger *slog.Logger
	// CacheTTL bounds how long an unsealed credential stays in memory
	// (default one minute). Local changes drop the cache at once; changes
	// made on another replica take effect within CacheTTL.
	CacheTTL time.Duration
	// MaxCacheEntries bounds the number of cached (connector, identity)
	// entries; reaching it empties the cache (default 100,000).
	MaxCacheEntries int
	// RotationGrace is the default time a superseded static secret version
	// stays stored after a rotation (default 24 hours).
	RotationGrace time.Duration
	// Dev allows plain-http token URLs and private addresses for every
	// credential (warden serve --dev).
	Dev bool
	// RootCAs, when set, replaces the system roots for OAuth token
	// endpoints (private CAs; tests).
	RootCAs *x509.CertPool
	// HTTPTimeout bounds one token request (default 10 s).
	HTTPTimeout time.Duration
	// DefaultTokenLifetime is assumed when a token endpoint omits
	// expires_in (default 5 minutes).
	DefaultTokenLifetime time.Duration
	// LeaseTTL is the default lease of a dynamic database role (default 15
	// minutes); a credential's config.ttl overrides it.
	LeaseTTL time.Duration
}

// Service manages credentials and resolves them for calls.
type Service struct {
	o        Options
	log      *slog.Logger
	leases   LeaseStore
	cache    sync.Map // connector "\x00" identityID -> *cached
	cacheN   atomic.Int64
	lastUsed sync.Map // credential id -> *atomic.Int64 (unix micros)

	tokens  sync.Map // credential id -> *tokenState
	locks   sync.Map // key -> chan struct{} (one slow-path fill at a time per key)
	public  *http.Client
	private *http.Client

	leaseCache sync.Map // connector "\x00" identityID -> *leaseEntry

	warnedMu sync.Mutex
	warned   map[string]bool // credential ids already reported overdue

	bg sync.WaitGroup
}

type cached struct {
	m       *Material
	tok     *tokenState // OAuth types: marks the token as in use
	expires int64       // unix nanos
}

// New returns a vault service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	if o.MaxCacheEntries == 0 {
		o.MaxCacheEntries = 100_000
	}
	if o.RotationGrace == 0 {
		o.RotationGrace = 24 * time.Hour
	}
	if o.HTTPTimeout == 0 {
		o.HTTPTimeout = 10 * time.Second
	}
	if o.DefaultTokenLifetime == 0 {
		o.DefaultTokenLifetime = 5 * time.Minute
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, log: o.Logger, leases: o.Leases, warned: map[string]bool{}}
	if s.leases == nil {
		s.leases, _ = o.Store.(LeaseStore)
	}
	s.public, s.private = newTokenClient(o, false), newTokenClient(o, true)
	return s
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

// open unseals one version of a credential's secret fields. A retired or
// missing version, a store failure and a ciphertext that does not open are
// all credential_unavailable: the call fails closed.
func (s *Service) open(ctx context.Context, c *Credential, version int64) (map[string]string, error) {
	sealed, err := s.o.Store.SealedVersion(ctx, c.ID, version)
	if err != nil {
		if warden.IsCode(err, warden.CodeNotFound) {
			return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+c.Name+" has no usable secret version")
		}
		return nil, warden.Wrap(err, warden.CodeUnavailable, "credential store unavailable")
	}
	plain, err := s.o.Sealer.Open(sealed.Ciphertext, aad(c.ID, version))
	if err != nil {
		// Tampered or mis-copied ciphertext: refuse, never inject garbage.
		s.log.Error("credential ciphertext does not open", "credential", c.Name, "credential_id", c.ID, "version", version, "err", err)
		return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+c.Name+" cannot be opened")
	}
	var fields map[string]string
	err = json.Unmarshal(plain, &fields)
	clear(plain)
	if err != nil {
		return nil, warden.Errorf(warden.CodeCredentialUnavailable, "credential %s is damaged", c.Name)
	}
	return fields, nil
}

// CreateInput creates a credential. Secret holds the type's fields.
type CreateInput struct {
	Name          string
	Type          string
	Connector     string
	Identity      string // identity id the credential is bound to; "" = every identity
	Owner         string
	Description   string
	Config        map[string]any
	Rotation      time.Duration
	RotationGrace time.Duration
	ExpiresAt     *time.Time
	Secret        map[string]string
}

func canWrite(p warden.Principal) bool { return p.HasRole(warden.RoleSecurity) }
func canRead(p warden.Principal) bool {
	return p.HasRole(warden.RoleSecurity, warden.RoleAuditor)
}

var (
	errWrite = warden.Errorf(warden.CodeForbidden, "managing credentials needs the admin or security role")
	errRead  = warden.Errorf(warden.CodeForbidden, "reading credentials needs the admin, security or auditor role")
)

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
	if in.RotationGrace < 0 {
		return nil, warden.FieldError("rotation.grace", "must be positive")
	}
	if err := s.checkConfig(in.Type, in.Config); err != nil {
		return nil, err
	}
	now := s.o.Now().UTC()
	c := &Credential{
		ID: warden.NewID(warden.PrefixCredential), Name: in.Name, Type: in.Type, Connector: in.Connector,
		IdentityID: in.Identity, Owner: in.Owner, Description: in.Description, Config: in.Config,
		Rotation: in.Rotation, RotationGrace: in.RotationGrace, ExpiresAt: in.ExpiresAt, Version: 1, CreatedAt: now, CreatedBy: p.Actor(),
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

// checkConfig refuses secrets hidden in non-secret settings (a URL with an
// embedded password), then applies the type's own config rules.
func (s *Service) checkConfig(typ string, cfg map[string]any) error {
	for k, v := range cfg {
		if sv, ok := v.(string); ok && hasURLPassword(sv) {
			return warden.FieldError("config."+k, "contains a URL with an embedded password; put secrets in the secret object")
		}
	}
	if spec := specs[typ]; spec != nil && spec.config != nil {
		return spec.config(cfg, &s.o)
	}
	return nil
}

// Get returns a credential's metadata.
func (s *Service) Get(ctx context.Context, p warden.Principal, name string) (*Credential, error) {
	if !canRead(p) {
		return nil, errRead
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
		return nil, errRead
	}
	return s.o.Store.ListCredentials(ctx, connector)
}

// Patch changes metadata; nil fields stay.
type Patch struct {
	Owner         *string
	Description   *string
	Rotation      *time.Duration
	RotationGrace *time.Duration
	ExpiresAt     **time.Time
	Config        *map[string]any
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
	if patch.RotationGrace != nil {
		if *patch.RotationGrace < 0 {
			return nil, warden.FieldError("rotation.grace", "must be positive")
		}
		next.RotationGrace = *patch.RotationGrace
	}
	if patch.ExpiresAt != nil {
		next.ExpiresAt = *patch.ExpiresAt
	}
	if patch.Config != nil {
		if err := s.checkConfig(c.Type, *patch.Config); err != nil {
			return nil, err
		}
		next.Config = *patch.Config
	}
	next.UpdatedAt = s.o.Now().UTC()
	rec := warden.NewChange(p, "credential.update", "credential", c.ID, map[string]any{"name": c.Name})
	if err := s.o.Store.UpdateCredential(ctx, &next, c.Version, nil, rec); err != nil {
		return nil, err
	}
	s.forgetCredential(c.ID)
	s.Purge()
	return &next, nil
}

// grace is the credential's rotation grace or the service default.
func (s *Service) grace(c *Credential) time.Duration {
	if c.RotationGrace > 0 {
		return c.RotationGrace
	}
	return s.o.RotationGrace
}

// Rotate stores a new secret version. Calls use it from the next request
// on this replica (within CacheTTL on others). The previous version stays
// stored, and openable, for the credential's grace period (see
// docs/vault.md: replicas whose cache predates the rotation may still
// inject it until then, and it is listed as "previous"); the sweeper then
// retires it (its ciphertext is erased).
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
	sv := &Sealed{CredentialID: c.ID, Version: next.Version, Ciphertext: ct, CreatedAt: now, PreviousRetireAt: now.Add(s.grace(c))}
	if err := s.o.Store.UpdateCredential(ctx, &next, c.Version, sv, rec); err != nil {
		return nil, err
	}
	s.forgetCredential(c.ID)
	s.Purge()
	return &next, nil
}

// Version is one stored version of a credential's secret, without the
// secret. State is "current", "previous" (superseded, still stored until
// RetireAt) or "retired" (ciphertext erased).
type Version struct {
	Version   int64
	State     string
	CreatedAt time.Time
	RetireAt  *time.Time
	RetiredAt *time.Time
}

// Versions lists a credential's versions, oldest first.
func (s *Service) Versions(ctx context.Context, p warden.Principal, name string) ([]Version, error) {
	c, err := s.Get(ctx, p, name)
	if err != nil {
		return nil, err
	}
	vs, err := s.o.Store.ListVersions(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Version, 0, len(vs))
	for _, v := range vs {
		st := "previous"
		switch {
		case v.RetiredAt != nil:
			st = "retired"
		case v.Version == c.Version:
			st = "current"
		}
		out = append(out, Version{Version: v.Version, State: st, CreatedAt: v.CreatedAt, RetireAt: v.RetireAt, RetiredAt: v.RetiredAt})
	}
	return out, nil
}

// Delete removes a credential; calls that relied on it are denied
// no_credential from the next request. For postgres_dynamic, every role it
// leased is dropped first: if that fails the credential stays (deleting it
// would orphan the roles, whose admin connection it holds).
func (s *Service) Delete(ctx context.Context, p warden.Principal, name string) error {
	if !canWrite(p) {
		return errWrite
	}
	c, err := s.Get(ctx, p, name)
	if err != nil {
		return err
	}
	if c.Type == TypePostgresDynamic {
		if err := s.dropAllLeases(ctx, p, c); err != nil {
			return err
		}
	}
	rec := warden.NewChange(p, "credential.delete", "credential", c.ID, map[string]any{"name": c.Name})
	if err := s.o.Store.DeleteCredential(ctx, c.ID, rec); err != nil {
		return err
	}
	s.forgetCredential(c.ID)
	s.Purge()
	return nil
}

// Purge drops every unsealed credential and cached lease from memory.
// Access tokens stay: they are tied to a credential version and re-checked
// against it on the next resolve.
func (s *Service) Purge() {
	s.cache.Clear()
	s.cacheN.Store(0)
	s.leaseCache.Clear()
}

// forgetCredential drops a credential's access token.
func (s *Service) forgetCredential(id string) { s.tokens.Delete(id) }

// IdentityChanged is called when an identity's status changes. An identity
// that is no longer active loses its cached material at once, and its
// leases are revoked and their roles dropped in the background (the gate
// already denies it, so this only closes the database side).
func (s *Service) IdentityChanged(identityID string, active bool) {
	if active {
		return
	}
	suffix := "\x00" + identityID
	for _, m := range []*sync.Map{&s.cache, &s.leaseCache} {
		m.Range(func(k, _ any) bool {
			if strings.HasSuffix(k.(string), suffix) {
				m.Delete(k)
			}
			return true
		})
	}
	if s.leases == nil {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.RevokeIdentityLeases(ctx, identityID, "identity suspended"); err != nil {
			s.log.Error("revoking leases of a suspended identity; the sweeper retries when they expire", "identity", identityID, "err", err)
		}
	}()
}

// Wait waits for background work started by IdentityChanged.
func (s *Service) Wait() { s.bg.Wait() }

// ErrNoCredential is returned by Resolve when no credential serves the call.
var ErrNoCredential = warden.Errorf(warden.CodeNoCredential, "no credential is configured for this connector and identity")

// binding finds the credential serving connector for identityID.
func (s *Service) binding(ctx context.Context, connector, identityID string, now time.Time) (*Credential, error) {
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
	return cred, nil
}

// Resolve returns the credential material that serves connector for
// identityID: the identity's own binding first, then the connector default.
// Unsealed material is cached for at most CacheTTL (OAuth material until its
// token's refresh time, lease material until the lease's renewal time).
// Errors: ErrNoCredential (code no_credential), CodeCredentialUnavailable
// when the secret cannot be opened or a token or lease cannot be obtained,
// CodeUnavailable when the store fails. Every error means: fail closed.
func (s *Service) Resolve(ctx context.Context, connector, identityID string) (*Material, error) {
	key := connector + "\x00" + identityID
	now := s.o.Now()
	if v, ok := s.cache.Load(key); ok {
		c := v.(*cached)
		if now.UnixNano() < c.expires {
			s.touch(c.m.CredentialID, now)
			if c.tok != nil {
				c.tok.used.Store(true)
			}
			return c.m, nil
		}
	}
	cred, err := s.binding(ctx, connector, identityID, now)
	if err != nil {
		return nil, err
	}
	until := now.Add(s.o.CacheTTL)
	var (
		m   *Material
		tok *tokenState
	)
	switch {
	case isOAuth(cred.Type):
		var t *accessToken
		tok, t, err = s.accessToken(ctx, cred, now)
		if err != nil {
			return nil, err
		}
		m = &Material{CredentialID: cred.ID, Name: cred.Name, Type: cred.Type, Version: cred.Version, Config: cred.Config,
			Fields: map[string]warden.Secret{"token": t.value}, ExpiresAt: t.expires}
		tok.used.Store(true)
		until = minTime(until, t.serveUntil)
	case cred.Type == TypePostgresDynamic:
		l, renew, err := s.leaseFor(ctx, cred, identityID, now)
		if err != nil {
			return nil, err
		}
		m = &Material{CredentialID: cred.ID, Name: cred.Name, Type: cred.Type, Version: cred.Version, Config: cred.Config,
			Fields: map[string]warden.Secret{"username": warden.NewSecret(l.User), "password": l.Password}, ExpiresAt: l.ExpiresAt, Lease: l}
		until = minTime(until, renew)
	default:
		fields, err := s.open(ctx, cred, cred.Version)
		if err != nil {
			return nil, err
		}
		m = &Material{CredentialID: cred.ID, Name: cred.Name, Type: cred.Type, Version: cred.Version, Config: cred.Config, Fields: make(map[string]warden.Secret, len(fields))}
		for k, v := range fields {
			m.Fields[k] = warden.NewSecret(v)
		}
	}
	s.cachePut(&s.cache, key, &cached{m: m, tok: tok, expires: until.UnixNano()})
	s.touch(cred.ID, now)
	return m, nil
}

// cachePut stores an entry, emptying both caches when they reach
// MaxCacheEntries (a bound on memory, not an eviction policy: a full cache
// only costs the next calls a store read and an unseal each).
func (s *Service) cachePut(m *sync.Map, key string, v any) {
	if _, loaded := m.Swap(key, v); !loaded && s.cacheN.Add(1) > int64(s.o.MaxCacheEntries) {
		s.Purge()
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// lock takes the slow-path lock for key (one token fetch or lease creation
// at a time per credential and identity), honouring ctx.
func (s *Service) lock(ctx context.Context, key string) (func(), error) {
	v, _ := s.locks.LoadOrStore(key, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, warden.Wrap(ctx.Err(), warden.CodeUnavailable, "request cancelled or timed out")
	}
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
