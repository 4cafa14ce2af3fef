// Package authn authenticates callers: agents by API key or short-lived
// access token (EdDSA JWT), humans by admin token with roles. Verified
// credentials are cached so the hot path pays no signature check or database
// read, while suspension, revocation and decommissioning are checked against
// in-memory state on every request.
package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"warden"
)

// Key is an agent API key's record. The key itself is never stored: Hash is
// its SHA-256, Hint its first characters for people to recognise it.
type Key struct {
	ID         string
	IdentityID string
	Hash       string
	Hint       string
	CreatedAt  time.Time
	CreatedBy  string
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// AdminToken is an admin token's record: roles and the human it acts for.
type AdminToken struct {
	ID         string
	Name       string
	Subject    string
	Roles      []string
	Hash       string
	Hint       string
	CreatedAt  time.Time
	CreatedBy  string
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// Revocations is the revocation state a replica keeps in memory.
type Revocations struct {
	Keys        []string // revoked agent key ids
	AdminTokens []string // revoked admin token ids
	TokenIDs    []string // revoked access-token jtis not yet expired
}

// Store is the data access authn needs. Creates fail with CodeConflict on a
// duplicate; lookups by hash fail with CodeNotFound. RevokeKey fails with
// CodeNotFound when the key does not belong to the identity. Writes record rec
// in the same transaction.
type Store interface {
	CreateAPIKey(ctx context.Context, k *Key, rec warden.Change) error
	APIKeyByHash(ctx context.Context, hash string) (*Key, error)
	ListAPIKeys(ctx context.Context, identityID string) ([]*Key, error)
	RevokeAPIKey(ctx context.Context, identityID, keyID string, at time.Time, rec warden.Change) error
	RevokeIdentityKeys(ctx context.Context, identityID string, at time.Time) error
	CreateAdminToken(ctx context.Context, t *AdminToken, rec warden.Change) error
	AdminTokenByHash(ctx context.Context, hash string) (*AdminToken, error)
	ListAdminTokens(ctx context.Context) ([]*AdminToken, error)
	RevokeAdminToken(ctx context.Context, id string, at time.Time, rec warden.Change) error
	RevokeTokenID(ctx context.Context, jti string, expiresAt, at time.Time) error
	RevocationState(ctx context.Context, now time.Time) (Revocations, error)
	TouchAPIKeys(ctx context.Context, at map[string]int64) error
	TouchAdminTokens(ctx context.Context, at map[string]int64) error
	TouchIdentities(ctx context.Context, at map[string]int64) error
}

// Keys gives access to signing keys kept in the keyring (internal/seal).
type Keys interface {
	Signer(ctx context.Context, name string) (kid string, priv ed25519.PrivateKey, err error)
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

// hashSecret is how keys and tokens are stored and looked up: SHA-256 in
// hex. Keys carry ~190 bits of entropy, so a fast hash is the right tool
// (no password stretching needed).
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func hint(s string) string {
	if len(s) <= 11 {
		return s
	}
	return s[:11] + "..."
}
