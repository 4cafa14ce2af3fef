package warden

import (
	"crypto/rand"
	"hash/crc32"
	"math/big"
	"strings"
)

// Key prefixes. A Warden key is prefix + 32 random base62 characters + a
// 6-character base62 CRC-32 checksum of everything before it, in the manner of
// GitHub's tokens: scanners recognise a leaked key by its prefix and verify it
// offline by its checksum, and a mistyped key is refused before any lookup.
const (
	KeyPrefixAgent = "wdn_ak_" // agent API key (belongs to one identity)
	KeyPrefixAdmin = "wdn_at_" // admin token (has roles)

	keyRandomLen   = 32
	keyChecksumLen = 6
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewKey returns a fresh key with the given prefix (KeyPrefixAgent or
// KeyPrefixAdmin). 32 base62 characters carry about 190 bits of entropy.
func NewKey(prefix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + keyRandomLen + keyChecksumLen)
	b.WriteString(prefix)
	max := big.NewInt(62)
	for range keyRandomLen {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("warden: crypto/rand failed: " + err.Error())
		}
		b.WriteByte(base62[n.Int64()])
	}
	body := b.String()
	b.WriteString(keyChecksum(body))
	return b.String()
}

// ParseKey checks a key's shape and checksum without any lookup. It returns
// the key's prefix and true when the key is well formed.
func ParseKey(s string) (prefix string, ok bool) {
	for _, p := range []string{KeyPrefixAgent, KeyPrefixAdmin} {
		if strings.HasPrefix(s, p) {
			prefix = p
			break
		}
	}
	if prefix == "" || len(s) != len(prefix)+keyRandomLen+keyChecksumLen {
		return "", false
	}
	for i := len(prefix); i < len(s); i++ {
		if strings.IndexByte(base62, s[i]) < 0 {
			return "", false
		}
	}
	body, sum := s[:len(s)-keyChecksumLen], s[len(s)-keyChecksumLen:]
	if keyChecksum(body) != sum {
		return "", false
	}
	return prefix, true
}

// keyChecksum encodes CRC-32 (IEEE) of body as 6 base62 digits, zero-padded.
func keyChecksum(body string) string {
	n := crc32.ChecksumIEEE([]byte(body))
	var out [keyChecksumLen]byte
	for i := keyChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
	return string(out[:])
}
