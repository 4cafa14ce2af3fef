package authn

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"warden"
	"warden/internal/identity"
)

// MaxKeyTTL bounds how long an API key or admin token may live when an
// expiry is given (keys without expiry are allowed but discouraged).
const MaxKeyTTL = 5 * 365 * 24 * time.Hour

// CreateKey issues a new API key for the identity named by ref. The key is
// returned once; only its hash is stored.
func (s *Service) CreateKey(ctx context.Context, p warden.Principal, ref string, expiresIn time.Duration) (*Key, warden.Secret, error) {
	id, err := s.manageable(ctx, p, ref)
	if err != nil {
		return nil, warden.Secret{}, err
	}
	if id.Status != identity.StatusActive {
		return nil, warden.Secret{}, warden.Errorf(warden.CodeConflict, "identity %q is %s; keys can be issued only to active identities", id.Name, id.Status)
	}
	if expiresIn < 0 || expiresIn > MaxKeyTTL {
		return nil, warden.Secret{}, warden.FieldError("expires_in", "must be between 1s and %s", MaxKeyTTL)
	}
	plain := warden.NewKey(warden.KeyPrefixAgent)
	now := s.now().UTC()
	k := &Key{ID: warden.NewID(warden.PrefixKey), IdentityID: id.ID, Hash: hashSecret(plain), Hint: hint(plain), CreatedAt: now, CreatedBy: p.Actor()}
	if expiresIn > 0 {
		exp := now.Add(expiresIn)
		k.ExpiresAt = &exp
	}
	rec := warden.NewChange(p, "key.create", "key", k.ID, map[string]any{"identity": id.ID})
	if err := s.o.Store.CreateAPIKey(ctx, k, rec); err != nil {
		return nil, warden.Secret{}, err
	}
	return k, warden.NewSecret(plain), nil
}

// manageable returns the identity if p may manage it (an agent never can).
func (s *Service) manageable(ctx context.Context, p warden.Principal, ref string) (*identity.Identity, error) {
	if !p.IsAdmin() {
		return nil, warden.Errorf(warden.CodeForbidden, "agents cannot manage identities or keys")
	}
	id, err := s.o.Identities.Get(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	if !identity.CanManage(p, id) {
		return nil, warden.Errorf(warden.CodeForbidden, "not allowed to manage identity %q", id.Name)
	}
	return id, nil
}

// ListKeys lists an identity's keys (metadata only).
func (s *Service) ListKeys(ctx context.Context, p warden.Principal, ref string) ([]*Key, error) {
	id, err := s.o.Identities.Get(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	return s.o.Store.ListAPIKeys(ctx, id.ID)
}

// RevokeKey revokes one key; tokens issued from it stop working on the next
// request.
func (s *Service) RevokeKey(ctx context.Context, p warden.Principal, ref, keyID string) error {
	id, err := s.manageable(ctx, p, ref)
	if err != nil {
		return err
	}
	if !warden.HasPrefix(keyID, warden.PrefixKey) {
		return warden.Errorf(warden.CodeNotFound, "key %q not found", keyID)
	}
	rec := warden.NewChange(p, "key.revoke", "key", keyID, map[string]any{"identity": id.ID})
	if err := s.o.Store.RevokeAPIKey(ctx, id.ID, keyID, s.now().UTC(), rec); err != nil {
		return err
	}
	s.revoked.Store("k:"+keyID, struct{}{})
	return nil
}

// RevokeIdentityKeys revokes every key of a decommissioned identity. Its
// tokens already fail the status check; this makes the revocation durable.
func (s *Service) RevokeIdentityKeys(ctx context.Context, identityID string) error {
	keys, err := s.o.Store.ListAPIKeys(ctx, identityID)
	if err != nil {
		return err
	}
	if err := s.o.Store.RevokeIdentityKeys(ctx, identityID, s.now().UTC()); err != nil {
		return err
	}
	for _, k := range keys {
		s.revoked.Store("k:"+k.ID, struct{}{})
	}
	return nil
}

// Token is an issued access token.
type Token struct {
	AccessToken warden.Secret
	ExpiresIn   int64 // seconds
	IdentityID  string
}

// IssueToken is the OAuth2 client-credentials grant: the API key is the
// client secret; clientID, when given, must name the key's identity (id or
// name). Errors are CodeUnauthenticated (RFC 6749 invalid_client) or the
// identity's status codes.
func (s *Service) IssueToken(ctx context.Context, clientID, secret string) (*Token, error) {
	if prefix, ok := warden.ParseKey(secret); !ok || prefix != warden.KeyPrefixAgent {
		return nil, errUnauthenticated("client_secret is not a valid Warden API key")
	}
	ck, err := s.lookupKey(ctx, secret, false)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, errUnauthenticated("unknown API key")
	}
	if err != nil {
		return nil, err
	}
	k := ck.agent
	if err := s.checkKey(k); err != nil {
		return nil, err
	}
	if clientID != "" && clientID != k.IdentityID {
		v, ok := s.status.Load(k.IdentityID)
		if !ok || v.(*idState).name != clientID {
			return nil, errUnauthenticated("client_id does not match the key's identity")
		}
	}
	kid, priv, err := s.o.Keys.Signer(ctx, "token")
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "signing key unavailable")
	}
	now := s.now().UTC()
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.o.Issuer,
			Subject:   k.IdentityID,
			Audience:  jwt.ClaimStrings{s.o.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.o.TokenTTL)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        warden.NewID("jti_"),
		},
		KeyID: k.ID,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	signed, err := t.SignedString(priv)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "cannot sign token")
	}
	s.touch("i:"+k.IdentityID, "k:"+k.ID)
	return &Token{AccessToken: warden.NewSecret(signed), ExpiresIn: int64(s.o.TokenTTL / time.Second), IdentityID: k.IdentityID}, nil
}

// RevokeToken revokes an access token presented by its holder (RFC 7009).
// Revoking an invalid token is not an error (the RFC says so).
func (s *Service) RevokeToken(ctx context.Context, p warden.Principal, raw string) error {
	var claims tokenClaims
	_, err := s.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, ok := s.o.Keys.PublicKey(kid)
		if !ok {
			return nil, errUnauthenticated("unknown key")
		}
		return pub, nil
	})
	if err != nil {
		return nil
	}
	if p.Kind == warden.PrincipalIdentity && p.ID != claims.Subject {
		return warden.Errorf(warden.CodeForbidden, "an identity may revoke only its own tokens")
	}
	if err := s.o.Store.RevokeTokenID(ctx, claims.ID, claims.ExpiresAt.Time, s.now().UTC()); err != nil {
		return err
	}
	s.revoked.Store("j:"+claims.ID, struct{}{})
	s.tokens.Delete(raw)
	return nil
}

// CreateAdminToken issues an admin token with roles for a human subject.
// Only an admin may create one, and nobody can grant roles beyond their own.
func (s *Service) CreateAdminToken(ctx context.Context, p warden.Principal, name, subject string, roles []string, expiresIn time.Duration) (*AdminToken, warden.Secret, error) {
	if !p.HasRole(warden.RoleAdmin) {
		return nil, warden.Secret{}, warden.Errorf(warden.CodeForbidden, "creating admin tokens needs the admin role")
	}
	if name == "" || len(name) > 128 || !printable(name) {
		return nil, warden.Secret{}, warden.FieldError("name", "is required (at most 128 printable characters)")
	}
	if err := identity.ValidateOwner(subject); err != nil {
		return nil, warden.Secret{}, warden.FieldError("subject", "must name the human this token acts for (e.g. an email address), without spaces")
	}
	if len(roles) == 0 {
		return nil, warden.Secret{}, warden.FieldError("roles", "at least one role is required (%s)", strings.Join(warden.Roles, ", "))
	}
	for _, r := range roles {
		if !slices.Contains(warden.Roles, r) {
			return nil, warden.Secret{}, warden.FieldError("roles", "unknown role %q (want one of %s)", r, strings.Join(warden.Roles, ", "))
		}
	}
	if expiresIn < 0 || expiresIn > MaxKeyTTL {
		return nil, warden.Secret{}, warden.FieldError("expires_in", "must be between 1s and %s", MaxKeyTTL)
	}
	plain := warden.NewKey(warden.KeyPrefixAdmin)
	now := s.now().UTC()
	t := &AdminToken{ID: warden.NewID(warden.PrefixAdminToken), Name: name, Subject: subject, Roles: slices.Compact(slices.Sorted(slices.Values(roles))), Hash: hashSecret(plain), Hint: hint(plain), CreatedAt: now, CreatedBy: p.Actor()}
	if expiresIn > 0 {
		exp := now.Add(expiresIn)
		t.ExpiresAt = &exp
	}
	rec := warden.NewChange(p, "admin_token.create", "admin_token", t.ID, map[string]any{"name": name, "subject": subject, "roles": t.Roles})
	if err := s.o.Store.CreateAdminToken(ctx, t, rec); err != nil {
		return nil, warden.Secret{}, err
	}
	return t, warden.NewSecret(plain), nil
}

// ListAdminTokens lists admin tokens (metadata only).
func (s *Service) ListAdminTokens(ctx context.Context, p warden.Principal) ([]*AdminToken, error) {
	if !p.HasRole(warden.RoleAdmin, warden.RoleAuditor, warden.RoleSecurity) {
		return nil, warden.Errorf(warden.CodeForbidden, "listing admin tokens needs the admin, security or auditor role")
	}
	return s.o.Store.ListAdminTokens(ctx)
}

// RevokeAdminToken revokes an admin token immediately.
func (s *Service) RevokeAdminToken(ctx context.Context, p warden.Principal, id string) error {
	if !p.HasRole(warden.RoleAdmin) {
		return warden.Errorf(warden.CodeForbidden, "revoking admin tokens needs the admin role")
	}
	if !warden.HasPrefix(id, warden.PrefixAdminToken) {
		return warden.Errorf(warden.CodeNotFound, "admin token %q not found", id)
	}
	rec := warden.NewChange(p, "admin_token.revoke", "admin_token", id, nil)
	if err := s.o.Store.RevokeAdminToken(ctx, id, s.now().UTC(), rec); err != nil {
		return err
	}
	s.revoked.Store("a:"+id, struct{}{})
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
