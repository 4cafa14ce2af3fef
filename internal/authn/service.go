package authn

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"warden"
	"warden/internal/identity"
)

// Options configures a Service.
type Options struct {
	Store      Store
	Keys       Keys
	Identities *identity.Service
	Logger     *slog.Logger
	// RootToken, when set, authenticates as root: every role. Compared in
	// constant time against its hash; the value itself is not kept.
	RootToken warden.Secret
	// Audience is the aud claim of access tokens (default "warden").
	Audience string
	// Issuer is the iss claim (default "warden").
	Issuer string
	// TokenTTL is the access-token lifetime (default 15 minutes).
	TokenTTL time.Duration
	// Leeway tolerates clock skew on exp/iat (default 30 seconds).
	Leeway time.Duration
	Now    func() time.Time
}

// Service authenticates and manages keys, tokens and admin tokens.
type Service struct {
	o        Options
	rootHash [32]byte
	hasRoot  bool
	parser   *jwt.Parser

	// status holds identity id -> *idState for every identity: suspension
	// and decommissioning are checked here on every request.
	status sync.Map
	// revoked holds revoked key ids, admin token ids and jtis ("k:", "a:",
	// "j:" prefixes).
	revoked sync.Map
	// tokens caches verified access tokens: token string -> *cachedToken.
	tokens     sync.Map
	tokenCount atomic.Int64
	// keys caches API key and admin token records by hash.
	keys sync.Map

	lastUsed sync.Map // "i:"/"k:"/"a:" + id -> *atomic.Int64 (unix micros)
}

type idState struct {
	name   string
	status string
}

type cachedToken struct {
	identityID string
	keyID      string
	jti        string
	exp        int64 // unix seconds
	principal  warden.Principal
	// Map keys built once so the cached path allocates nothing.
	revJTI, revKey, touchID, touchKey string
}

func newCachedToken(identityID, keyID, jti string, exp int64) *cachedToken {
	return &cachedToken{identityID: identityID, keyID: keyID, jti: jti, exp: exp,
		revJTI: "j:" + jti, revKey: "k:" + keyID, touchID: "i:" + identityID, touchKey: "k:" + keyID}
}

type cachedKey struct {
	agent *Key
	admin *AdminToken
}

// maxCachedTokens bounds the verified-token cache; when full it is cleared
// (tokens are then verified again, costing one signature check each).
const maxCachedTokens = 200_000

// New returns a Service. Call Load before serving.
func New(o Options) *Service {
	if o.Audience == "" {
		o.Audience = "warden"
	}
	if o.Issuer == "" {
		o.Issuer = "warden"
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = 15 * time.Minute
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o}
	if r := o.RootToken.Reveal(); r != "" {
		s.rootHash = sha256Sum(r)
		s.hasRoot = true
	}
	s.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithAudience(o.Audience),
		jwt.WithIssuer(o.Issuer),
		jwt.WithLeeway(o.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(o.Now),
		jwt.WithStrictDecoding(),
	)
	return s
}

// Load fills the in-memory state from the store: every identity's status and
// every revocation. Call at start and (on shared databases) periodically.
func (s *Service) Load(ctx context.Context) error {
	ids, err := s.o.Identities.All(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		s.IdentityChanged(id)
		seen[id.ID] = true
	}
	s.status.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			s.status.Delete(k)
		}
		return true
	})
	rev, err := s.o.Store.RevocationState(ctx, s.o.Now())
	if err != nil {
		return err
	}
	for _, k := range rev.Keys {
		s.revoked.Store("k:"+k, struct{}{})
	}
	for _, a := range rev.AdminTokens {
		s.revoked.Store("a:"+a, struct{}{})
	}
	for _, j := range rev.TokenIDs {
		s.revoked.Store("j:"+j, struct{}{})
	}
	return nil
}

// IdentityChanged updates the cached status of an identity. The identity
// registry calls it after every committed change.
func (s *Service) IdentityChanged(id *identity.Identity) {
	s.status.Store(id.ID, &idState{name: id.Name, status: id.Status})
}

func (s *Service) now() time.Time { return s.o.Now() }

// Authenticate turns a bearer credential into a principal. The credential may
// be the root token, an admin token, an agent API key or an access token.
// Errors are CodeUnauthenticated (bad, expired or revoked credential) or
// CodeForbidden (the identity is suspended or decommissioned).
func (s *Service) Authenticate(ctx context.Context, bearer string) (warden.Principal, error) {
	if bearer == "" {
		return warden.Principal{}, errUnauthenticated("missing bearer token")
	}
	// Fast path: a cached, verified access token.
	if v, ok := s.tokens.Load(bearer); ok {
		ct := v.(*cachedToken)
		if err := s.checkToken(ct); err != nil {
			return warden.Principal{}, err
		}
		s.touch(ct.touchID, ct.touchKey)
		return ct.principal, nil
	}
	if s.hasRoot && len(bearer) >= 16 {
		h := sha256Sum(bearer)
		if subtle.ConstantTimeCompare(h[:], s.rootHash[:]) == 1 {
			return warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin, warden.RoleSecurity, warden.RoleApprover, warden.RoleAuditor}}, nil
		}
	}
	if prefix, ok := warden.ParseKey(bearer); ok {
		if prefix == warden.KeyPrefixAdmin {
			return s.authAdmin(ctx, bearer)
		}
		return s.authKey(ctx, bearer)
	}
	if strings.HasPrefix(bearer, warden.KeyPrefixAgent) || strings.HasPrefix(bearer, warden.KeyPrefixAdmin) {
		return warden.Principal{}, errUnauthenticated("malformed key (checksum does not match)")
	}
	if strings.Count(bearer, ".") == 2 {
		return s.authJWT(ctx, bearer)
	}
	return warden.Principal{}, errUnauthenticated("unrecognised credential")
}

func errUnauthenticated(msg string) error {
	return warden.Errorf(warden.CodeUnauthenticated, "%s", msg)
}

// checkIdentity fails unless identity id exists and is active.
func (s *Service) checkIdentity(identityID string) error {
	v, ok := s.status.Load(identityID)
	if !ok {
		return errUnauthenticated("unknown identity")
	}
	switch st := v.(*idState); st.status {
	case identity.StatusActive:
		return nil
	case identity.StatusSuspended:
		return warden.Errorf(warden.CodeIdentitySuspended, "identity %s is suspended", st.name)
	default:
		return warden.Errorf(warden.CodeIdentityDecommissioned, "identity %s is decommissioned", st.name)
	}
}

func (s *Service) checkToken(ct *cachedToken) error {
	if s.now().Unix() > ct.exp+int64(s.o.Leeway/time.Second) {
		return errUnauthenticated("access token expired")
	}
	if _, r := s.revoked.Load(ct.revJTI); r {
		return errUnauthenticated("access token revoked")
	}
	if _, r := s.revoked.Load(ct.revKey); r {
		return errUnauthenticated("the key this token was issued from is revoked")
	}
	return s.checkIdentity(ct.identityID)
}

func (s *Service) lookupKey(ctx context.Context, secret string, admin bool) (*cachedKey, error) {
	h := hashSecret(secret)
	if v, ok := s.keys.Load(h); ok {
		return v.(*cachedKey), nil
	}
	var ck cachedKey
	if admin {
		t, err := s.o.Store.AdminTokenByHash(ctx, h)
		if err != nil {
			return nil, err
		}
		ck.admin = t
	} else {
		k, err := s.o.Store.APIKeyByHash(ctx, h)
		if err != nil {
			return nil, err
		}
		ck.agent = k
	}
	s.keys.Store(h, &ck)
	return &ck, nil
}

func (s *Service) authKey(ctx context.Context, key string) (warden.Principal, error) {
	ck, err := s.lookupKey(ctx, key, false)
	if warden.IsCode(err, warden.CodeNotFound) {
		return warden.Principal{}, errUnauthenticated("unknown API key")
	}
	if err != nil {
		return warden.Principal{}, err
	}
	k := ck.agent
	if err := s.checkKey(k); err != nil {
		return warden.Principal{}, err
	}
	s.touch("i:"+k.IdentityID, "k:"+k.ID)
	return s.identityPrincipal(k.IdentityID, k.ID, ""), nil
}

func (s *Service) checkKey(k *Key) error {
	if _, r := s.revoked.Load("k:" + k.ID); r || k.RevokedAt != nil {
		return errUnauthenticated("API key revoked")
	}
	if k.ExpiresAt != nil && s.now().After(*k.ExpiresAt) {
		return errUnauthenticated("API key expired")
	}
	return s.checkIdentity(k.IdentityID)
}

func (s *Service) identityPrincipal(identityID, keyID, jti string) warden.Principal {
	name := ""
	if v, ok := s.status.Load(identityID); ok {
		name = v.(*idState).name
	}
	return warden.Principal{Kind: warden.PrincipalIdentity, ID: identityID, Subject: name, KeyID: keyID, TokenID: jti}
}

func (s *Service) authAdmin(ctx context.Context, tok string) (warden.Principal, error) {
	ck, err := s.lookupKey(ctx, tok, true)
	if warden.IsCode(err, warden.CodeNotFound) {
		return warden.Principal{}, errUnauthenticated("unknown admin token")
	}
	if err != nil {
		return warden.Principal{}, err
	}
	t := ck.admin
	if _, r := s.revoked.Load("a:" + t.ID); r || t.RevokedAt != nil {
		return warden.Principal{}, errUnauthenticated("admin token revoked")
	}
	if t.ExpiresAt != nil && s.now().After(*t.ExpiresAt) {
		return warden.Principal{}, errUnauthenticated("admin token expired")
	}
	s.touch("a:" + t.ID)
	return warden.Principal{Kind: warden.PrincipalAdmin, ID: t.ID, Subject: t.Subject, Roles: slices.Clone(t.Roles)}, nil
}

// tokenClaims are the access token's claims: the registered ones plus the
// id of the key it was issued from, so revoking a key kills its tokens.
type tokenClaims struct {
	jwt.RegisteredClaims
	KeyID string `json:"key"`
}

func (s *Service) authJWT(ctx context.Context, raw string) (warden.Principal, error) {
	if len(raw) > 4096 {
		return warden.Principal{}, errUnauthenticated("access token too long")
	}
	var claims tokenClaims
	_, err := s.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, ok := s.o.Keys.PublicKey(kid)
		if !ok {
			return nil, errUnauthenticated("access token signed by an unknown key")
		}
		return pub, nil
	})
	if err != nil {
		return warden.Principal{}, errUnauthenticated("invalid access token: " + jwtReason(err))
	}
	if claims.ID == "" || !warden.HasPrefix(claims.Subject, warden.PrefixIdentity) || claims.KeyID == "" {
		return warden.Principal{}, errUnauthenticated("invalid access token: missing claims")
	}
	ct := newCachedToken(claims.Subject, claims.KeyID, claims.ID, claims.ExpiresAt.Unix())
	if err := s.checkToken(ct); err != nil {
		return warden.Principal{}, err
	}
	ct.principal = s.identityPrincipal(ct.identityID, ct.keyID, ct.jti)
	if s.tokenCount.Add(1) > maxCachedTokens {
		s.tokens.Clear()
		s.tokenCount.Store(1)
	}
	s.tokens.Store(raw, ct)
	s.touch(ct.touchID, ct.touchKey)
	return ct.principal, nil
}

// jwtReason names what was wrong with a token without echoing it.
func jwtReason(err error) string {
	switch {
	case errorsIs(err, jwt.ErrTokenExpired):
		return "expired"
	case errorsIs(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errorsIs(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errorsIs(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errorsIs(err, jwt.ErrTokenUnverifiable), errorsIs(err, jwt.ErrTokenMalformed):
		return "malformed or unverifiable"
	case errorsIs(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future"
	case errorsIs(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	}
	return "rejected"
}

// touch records last use; a background loop flushes it (FlushLastUsed).
func (s *Service) touch(keys ...string) {
	now := s.now().UnixMicro()
	for _, k := range keys {
		if k == "" {
			continue
		}
		v, ok := s.lastUsed.Load(k)
		if !ok {
			v, _ = s.lastUsed.LoadOrStore(k, new(atomic.Int64))
		}
		c := v.(*atomic.Int64)
		// Second resolution is plenty and avoids a cache-line write per call.
		if now-c.Load() > int64(time.Second/time.Microsecond) {
			c.Store(now)
		}
	}
}

// FlushLastUsed writes recorded last-used times to the store.
func (s *Service) FlushLastUsed(ctx context.Context) error {
	ids, keys, admins := map[string]int64{}, map[string]int64{}, map[string]int64{}
	s.lastUsed.Range(func(k, v any) bool {
		key := k.(string)
		t := v.(*atomic.Int64).Swap(0)
		if t == 0 {
			return true
		}
		switch key[:2] {
		case "i:":
			ids[key[2:]] = t
		case "k:":
			keys[key[2:]] = t
		case "a:":
			admins[key[2:]] = t
		}
		return true
	})
	if err := s.o.Store.TouchIdentities(ctx, ids); err != nil {
		return err
	}
	if err := s.o.Store.TouchAPIKeys(ctx, keys); err != nil {
		return err
	}
	return s.o.Store.TouchAdminTokens(ctx, admins)
}
