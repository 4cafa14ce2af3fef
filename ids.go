package warden

import (
	"crypto/rand"
	"strings"
)

// ID prefixes make an identifier's kind visible wherever it shows up (logs,
// audit rows, support tickets).
const (
	PrefixIdentity   = "nhi_"
	PrefixKey        = "key_"
	PrefixAdminToken = "adm_"
	PrefixRequest    = "req_"
	PrefixApproval   = "apr_"
	PrefixEvent      = "evt_"
	PrefixCredential = "cred_"
	PrefixFinding    = "fnd_"
)

// idAlphabet is Crockford's base32 in lower case: no ambiguous letters.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns prefix followed by 20 random base32 characters (100 bits).
func NewID(prefix string) string {
	return prefix + RandomString(20)
}

// RandomString returns n random characters from a 32-letter alphabet
// (5 bits of entropy each), read from crypto/rand.
func RandomString(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails on supported platforms
	var b strings.Builder
	b.Grow(n)
	for _, c := range buf {
		b.WriteByte(idAlphabet[c&31])
	}
	return b.String()
}

// HasPrefix reports whether s looks like an id of the given kind.
func HasPrefix(s, prefix string) bool {
	return strings.HasPrefix(s, prefix) && len(s) > len(prefix)
}
