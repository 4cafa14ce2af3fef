// Package seal is Warden's envelope encryption: a master key (never stored)
// wraps the keys in the keyring, the keyring's data-encryption keys (DEKs)
// seal secrets with AES-256-GCM, and its Ed25519 signing keys sign tokens and
// audit checkpoints.
//
// The hierarchy, the byte layouts and the rotation procedures are described in
// docs/seal.md. The contracts that matter to callers:
//
//   - Every ciphertext names the key that sealed it and is bound to the
//     caller's associated data (for example "credential:<id>:v<version>"): a
//     ciphertext copied to another row, or opened with other associated data,
//     does not open.
//   - Every failure to open is an error with a stable code; nothing that did
//     not authenticate is ever returned.
//   - A master key that does not open the stored keys makes Open fail with
//     ErrWrongMasterKey: the server refuses to start rather than serve garbage.
//   - No String, GoString, Format, LogValue or JSON form of a Keyring, a
//     KeyRecord or a key ever contains key material.
package seal

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Sentinel causes. Errors returned by this package are *warden.Error values
// whose Err chain holds one of these, so callers test with errors.Is and the
// API layer maps the warden code.
var (
	// ErrWrongMasterKey: the master key does not open the stored keys
	// (code warden.CodeInvalid).
	ErrWrongMasterKey = errors.New("seal: wrong master key")
	// ErrDamaged: a stored key record is malformed or fails authentication
	// under the master key that should open it: damage or tampering in the
	// key store (code warden.CodeInternal).
	ErrDamaged = errors.New("seal: keyring record damaged")
	// ErrCannotOpen: a ciphertext is malformed, truncated, tampered with,
	// sealed under another key or bound to other associated data (code
	// warden.CodeInternal). The error never says which, beyond "malformed"
	// versus "unknown key", so it is no oracle.
	ErrCannotOpen = errors.New("seal: cannot open")
	// ErrUnknownKey: a ciphertext names a key this keyring does not hold,
	// even after reloading the store. Errors with this cause also match
	// ErrCannotOpen.
	ErrUnknownKey = errors.New("seal: unknown key")
	// ErrClosed: the keyring was closed and its keys erased (code
	// warden.CodeUnavailable).
	ErrClosed = errors.New("seal: keyring closed")
)

// Key purposes. A purpose is part of every key id and of the associated data
// that binds a wrapped key to its record, so a key cannot be moved from one
// purpose to another.
const (
	// PurposeDEK marks AES-256 data-encryption keys used by Seal and Open.
	PurposeDEK = "dek"
	// SignPurposePrefix prefixes the purpose of Ed25519 signing keys:
	// "sign:token" signs access tokens, "sign:audit" audit checkpoints.
	SignPurposePrefix = "sign:"
)

// keySize is the size of every key the keyring creates: an AES-256 key or an
// Ed25519 seed.
const keySize = 32

// maxNameLen bounds signing key names; key ids must fit the one-byte length
// in the ciphertext header with room to spare.
const maxNameLen = 32

// SignPurpose returns the purpose of the signing keys called name, or an
// error when name is not 1-32 characters of [a-z0-9_-] starting with a letter
// or digit.
func SignPurpose(name string) (string, error) {
	if !validName(name) {
		return "", fieldErr("name", "a signing key name is 1-%d characters of a-z, 0-9, '_' and '-', starting with a letter or digit", maxNameLen)
	}
	return SignPurposePrefix + name, nil
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validPurpose accepts PurposeDEK, "sign:<name>" and, for forward
// compatibility, any other purpose of at most 48 characters of [a-z0-9:_-]
// (a later version may add purposes; this one keeps and re-wraps them but
// never uses them).
func validPurpose(p string) bool {
	if len(p) == 0 || len(p) > 48 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// keyID names generation gen of a purpose: "dek.1", "sign:token.3". Ids are
// deterministic on purpose: two replicas that race to create the same
// generation insert the same id, and the store's uniqueness on id lets exactly
// one of them win (see KeyStore.InsertKey).
func keyID(purpose string, gen uint64) string {
	return purpose + "." + strconv.FormatUint(gen, 10)
}

// parseKeyID splits an id made by keyID. It rejects leading zeros and
// generation 0 so that every generation has exactly one spelling.
func parseKeyID(id string) (purpose string, gen uint64, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", 0, false
	}
	purpose, num := id[:i], id[i+1:]
	if !validPurpose(purpose) || num[0] == '0' || len(num) > 19 {
		return "", 0, false
	}
	gen, err := strconv.ParseUint(num, 10, 64)
	if err != nil || gen == 0 {
		return "", 0, false
	}
	return purpose, gen, true
}

// validIDBytes reports whether b could be a key id: the characters of a
// purpose plus '.'. Used on untrusted ciphertext headers before any lookup.
func validIDBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// KeyInfo describes a key in the keyring without its material: what an admin
// command or a rotation policy needs to see.
type KeyInfo struct {
	ID         string
	Purpose    string
	Generation uint64
	CreatedAt  time.Time
	// Active is true for the newest key of its purpose: the one that seals
	// or signs. Older keys only open or verify.
	Active bool
}
