package seal

import "time"

// Hooks for the external tests. They exist only in the test binary.

// SealWithNonce seals with a caller-chosen nonce, so fuzz seeds are the same
// bytes in every fuzzing process.
func (k *Keyring) SealWithNonce(plaintext, aad, nonce []byte) ([]byte, error) {
	return k.seal(plaintext, aad, func(b []byte) error { copy(b, nonce); return nil })
}

// SetNow replaces the keyring's clock (miss-reload throttling).
func (k *Keyring) SetNow(now func() time.Time) {
	k.missMu.Lock()
	defer k.missMu.Unlock()
	k.now = now
}

// WrapRecord makes the record a keyring would store for the given material.
func WrapRecord(masterKey []byte, purpose string, gen uint64, material []byte, created time.Time) (KeyRecord, error) {
	m, err := newMaster(masterKey, "master")
	if err != nil {
		return KeyRecord{}, err
	}
	id := keyID(purpose, gen)
	w, err := m.wrap(id, purpose, material)
	if err != nil {
		return KeyRecord{}, err
	}
	return KeyRecord{ID: id, Purpose: purpose, Wrapped: w, CreatedAt: created}, nil
}

// MissReloadInterval exposes the throttle for the clock-driven test.
const MissReloadInterval = missReloadInterval
