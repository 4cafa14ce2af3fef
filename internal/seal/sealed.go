package seal

import (
	"crypto/rand"
	"sync"

	"warden"
)

// A sealed value (format 1) is
//
//	format (1 byte, 1) | id length n (1 byte, 1..255) | key id (n bytes) | nonce (12) | AES-256-GCM ciphertext + tag (16)
//
// and GCM's additional data is the whole header (format through nonce)
// followed by the caller's associated data. The header is self-delimiting,
// so header||aad is unambiguous.
const formatV1 = 1

// minSealedLen is the shortest well-formed sealed value: a one-byte key id
// and an empty plaintext.
const minSealedLen = 2 + 1 + nonceLen + tagLen

// adPool recycles the buffers that hold header||aad for GCM, so Seal and
// Open allocate only their output.
var adPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func withAD(header, aad []byte, f func(ad []byte)) {
	bp := adPool.Get().(*[]byte)
	ad := append(append((*bp)[:0], header...), aad...)
	f(ad)
	if cap(ad) <= 4096 { // do not keep huge buffers alive
		*bp = ad[:0]
		adPool.Put(bp)
	}
}

// Seal encrypts plaintext with the active data key, bound to aad. aad must
// identify where the ciphertext belongs, e.g. "credential:<id>:v<version>",
// so that a ciphertext copied elsewhere does not open; an empty aad is
// refused (code warden.CodeInvalid). The nonce is random: a data key should
// seal well under 2^32 values before RotateDataKey replaces it.
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	return k.seal(plaintext, aad, func(nonce []byte) error {
		_, err := rand.Read(nonce)
		return err
	})
}

func (k *Keyring) seal(plaintext, aad []byte, fillNonce func([]byte) error) ([]byte, error) {
	if len(aad) == 0 {
		return nil, fieldErr("aad", "associated data is required: it binds the ciphertext to its row")
	}
	k.mu.RLock()
	closed, dk := k.closed, k.active[PurposeDEK]
	k.mu.RUnlock()
	if closed {
		return nil, fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
	}
	if dk == nil {
		return nil, fail(warden.CodeInternal, nil, "the keyring holds no data key")
	}
	n := len(dk.header) + nonceLen
	out := make([]byte, n, n+len(plaintext)+tagLen)
	copy(out, dk.header)
	nonce := out[len(dk.header):n]
	if err := fillNonce(nonce); err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot read random bytes")
	}
	withAD(out[:n], aad, func(ad []byte) {
		out = dk.aead.Seal(out, nonce, plaintext, ad)
	})
	return out, nil
}

// Open decrypts a value Seal made, given the same aad. It fails, with code
// warden.CodeInternal and cause ErrCannotOpen, for anything that does not
// authenticate: a malformed or truncated value, any changed byte, other
// associated data, a key id that is not a data key. A value naming a key
// this keyring does not hold reloads the store once (at most once a second)
// and, if the key is still unknown, fails with ErrUnknownKey (which also
// matches ErrCannotOpen). The error never contains key material or
// plaintext.
func (k *Keyring) Open(ciphertext, aad []byte) ([]byte, error) {
	id, n, err := parseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	dk, err := k.lookupOrReload(id)
	if err != nil {
		return nil, err
	}
	if dk == nil {
		if _, _, ok := parseKeyID(string(id)); !ok {
			return nil, fail(warden.CodeInternal, ErrCannotOpen, "sealed data is malformed: bad key id")
		}
		return nil, fail(warden.CodeInternal, errUnknown, "sealed data names key %q, which this keyring does not hold", id)
	}
	if dk.aead == nil { // a signing key's id: never use it as an AES key
		return nil, fail(warden.CodeInternal, ErrCannotOpen, "sealed data does not open: tampered with, or bound to other data")
	}
	var plaintext []byte
	withAD(ciphertext[:n], aad, func(ad []byte) {
		plaintext, err = dk.aead.Open(nil, ciphertext[n-nonceLen:n], ciphertext[n:], ad)
	})
	if err != nil {
		return nil, fail(warden.CodeInternal, ErrCannotOpen, "sealed data does not open: tampered with, or bound to other data")
	}
	return plaintext, nil
}

// errUnknown matches both ErrUnknownKey and ErrCannotOpen.
var errUnknown = joined{ErrUnknownKey, ErrCannotOpen}

type joined []error

func (j joined) Error() string   { return j[0].Error() }
func (j joined) Unwrap() []error { return j }

// parseHeader checks a sealed value's header and returns its key id and the
// header length (format through nonce). It reads only bytes it has checked
// exist.
func parseHeader(b []byte) (id []byte, n int, err error) {
	malformed := func(what string) ([]byte, int, error) {
		return nil, 0, fail(warden.CodeInternal, ErrCannotOpen, "sealed data is malformed: %s", what)
	}
	if len(b) < minSealedLen {
		return malformed("too short")
	}
	if b[0] != formatV1 {
		return malformed("unknown format")
	}
	idLen := int(b[1])
	n = 2 + idLen + nonceLen
	if idLen == 0 || len(b) < n+tagLen {
		return malformed("bad key id length or truncated")
	}
	id = b[2 : 2+idLen]
	if !validIDBytes(id) {
		return malformed("bad key id")
	}
	return id, n, nil
}

// KeyID returns the id of the key that sealed ciphertext, read from its
// header without opening it: a background re-seal uses it to find values
// sealed under an old data key. The id is not authenticated until Open
// succeeds.
func KeyID(ciphertext []byte) (string, error) {
	id, _, err := parseHeader(ciphertext)
	if err != nil {
		return "", err
	}
	return string(id), nil
}

// Reseal opens ciphertext and, when an older data key sealed it, seals the
// plaintext again under the active data key with the same aad. It reports
// whether it changed anything; a value already under the active key is
// returned as is. Used to retire old data keys in the background.
func (k *Keyring) Reseal(ciphertext, aad []byte) ([]byte, bool, error) {
	plaintext, err := k.Open(ciphertext, aad)
	if err != nil {
		return nil, false, err
	}
	defer clear(plaintext)
	id, _, _ := parseHeader(ciphertext)
	if string(id) == k.DataKeyID() {
		return ciphertext, false, nil
	}
	out, err := k.Seal(plaintext, aad)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}
