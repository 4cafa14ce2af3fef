package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"

	"warden"
)

// A wrapped key is
//
//	version (1 byte, 1) | master id (8) | nonce (12) | AES-256-GCM(material) + tag (16)
//
// under the key-encryption key derived from the master key, with associated
// data binding it to its record's id and purpose (wrapAD). The master id lets
// Open tell "wrong master key" from "damaged record" and lets a rotation see
// which records are already under the new key.
const (
	wrapVersion   = 1
	masterIDLen   = 8
	nonceLen      = 12
	tagLen        = 16
	wrapHeaderLen = 1 + masterIDLen + nonceLen
	maxWrappedLen = 255
)

// HKDF labels. Distinct labels make the key-encryption key and the master id
// independent functions of the master key.
const (
	kekInfo      = "warden/seal kek v1"
	masterIDInfo = "warden/seal master-id v1"
	wrapADLabel  = "warden/seal wrap v1"
)

var (
	errForeignMaster = errors.New("wrapped by another master key")
	errBadWrap       = errors.New("malformed or unauthentic wrapped key")
)

// master holds what the keyring needs of a master key: the AEAD keyed with
// the derived key-encryption key and the public master id. The master key
// itself is not kept.
type master struct {
	id   [masterIDLen]byte
	aead cipher.AEAD
}

func newMaster(key []byte, what string) (*master, error) {
	if len(key) != keySize {
		return nil, fieldErr(what, "a master key is exactly %d bytes, got %d", keySize, len(key))
	}
	if allZero(key) {
		return nil, fieldErr(what, "is all zeros; a master key must be %d random bytes", keySize)
	}
	kek, err := hkdf.Key(sha256.New, key, nil, kekInfo, keySize)
	if err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot derive the key-encryption key")
	}
	defer clear(kek)
	id, err := hkdf.Key(sha256.New, key, nil, masterIDInfo, masterIDLen)
	if err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot derive the master key id")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot build the key-encryption cipher")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot build the key-encryption cipher")
	}
	m := &master{aead: aead}
	copy(m.id[:], id)
	return m, nil
}

// wrapAD binds a wrapped key to its header, id and purpose. Id and purpose
// are length-prefixed so no two (id, purpose) pairs give the same bytes.
func wrapAD(header []byte, id, purpose string) []byte {
	ad := make([]byte, 0, len(wrapADLabel)+len(header)+2+len(id)+len(purpose))
	ad = append(ad, wrapADLabel...)
	ad = append(ad, header...)
	ad = append(ad, byte(len(id)))
	ad = append(ad, id...)
	ad = append(ad, byte(len(purpose)))
	ad = append(ad, purpose...)
	return ad
}

// wrap seals material for the record (id, purpose) with a fresh nonce.
func (m *master) wrap(id, purpose string, material []byte) ([]byte, error) {
	if len(id) > 255 || len(purpose) > 255 || wrapHeaderLen+len(material)+tagLen > maxWrappedLen {
		return nil, fail(warden.CodeInternal, nil, "key too large to wrap")
	}
	out := make([]byte, wrapHeaderLen, wrapHeaderLen+len(material)+tagLen)
	out[0] = wrapVersion
	copy(out[1:], m.id[:])
	if _, err := rand.Read(out[1+masterIDLen : wrapHeaderLen]); err != nil {
		return nil, fail(warden.CodeInternal, err, "cannot read random bytes")
	}
	return m.aead.Seal(out, out[1+masterIDLen:wrapHeaderLen], material, wrapAD(out[:wrapHeaderLen], id, purpose)), nil
}

// wrappedMasterID returns the master id a wrapped key names, if it is long
// enough to name one.
func wrappedMasterID(wrapped []byte) ([masterIDLen]byte, bool) {
	var id [masterIDLen]byte
	if len(wrapped) < wrapHeaderLen+tagLen || wrapped[0] != wrapVersion {
		return id, false
	}
	copy(id[:], wrapped[1:])
	return id, true
}

// unwrap opens a wrapped key. It returns errForeignMaster when the blob names
// another master key and errBadWrap when it is malformed or does not
// authenticate (damage, tampering, or a record moved to another id/purpose).
// The caller owns and must clear the returned material.
func (m *master) unwrap(id, purpose string, wrapped []byte) ([]byte, error) {
	mid, ok := wrappedMasterID(wrapped)
	if !ok || len(wrapped) > maxWrappedLen || len(id) > 255 || len(purpose) > 255 {
		return nil, errBadWrap
	}
	if subtle.ConstantTimeCompare(mid[:], m.id[:]) != 1 {
		return nil, errForeignMaster
	}
	material, err := m.aead.Open(nil, wrapped[1+masterIDLen:wrapHeaderLen], wrapped[wrapHeaderLen:], wrapAD(wrapped[:wrapHeaderLen], id, purpose))
	if err != nil {
		return nil, errBadWrap
	}
	return material, nil
}

// pick returns the master whose id the wrapped key names, or nil.
func pick(masters []*master, wrapped []byte) *master {
	mid, ok := wrappedMasterID(wrapped)
	if !ok {
		return nil
	}
	for _, m := range masters {
		if m.id == mid {
			return m
		}
	}
	return nil
}
