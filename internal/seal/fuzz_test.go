package seal_test

import (
	"bytes"
	"testing"
	"time"

	"warden/internal/seal"
)

// fuzzKeyring is built from fixed key material, so the seeds (sealed with
// fixed nonces) are the same bytes in every fuzzing process.
func fuzzKeyring(f *testing.F) *seal.Keyring {
	f.Helper()
	master := bytes.Repeat([]byte{0x5e}, 32)
	s := newMemStore()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, k := range []struct {
		purpose string
		gen     uint64
		fill    byte
	}{{"dek", 1, 0xa1}, {"dek", 2, 0xa2}, {"dek", 3, 0xa3}, {"sign:token", 1, 0xb1}} {
		r, err := seal.WrapRecord(master, k.purpose, k.gen, bytes.Repeat([]byte{k.fill}, 32), created)
		if err != nil {
			f.Fatal(err)
		}
		s.put(r)
	}
	k, err := seal.Open(ctx, master, s)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(k.Close)
	return k
}

type fuzzSeed struct {
	blob, aad, plaintext []byte
}

// FuzzOpen feeds Open valid sealed values with bits flipped at any position
// (format, id length, key id, nonce, ciphertext, tag), truncations and
// arbitrary bytes. Property: Open never panics, and it succeeds only on an
// untouched seed with its own aad, returning that seed's plaintext.
func FuzzOpen(f *testing.F) {
	k := fuzzKeyring(f)
	var seeds []fuzzSeed
	for i, tc := range []struct{ plaintext, aad string }{
		{"", "credential:cred_a:v1"},
		{"s3cr3t-token-value", "credential:cred_a:v2"},
		{string(bytes.Repeat([]byte{'p'}, 256)), "credential:cred_b:v1"},
	} {
		nonce := bytes.Repeat([]byte{byte(i + 1)}, 12)
		blob, err := k.SealWithNonce([]byte(tc.plaintext), []byte(tc.aad), nonce)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, fuzzSeed{blob, []byte(tc.aad), []byte(tc.plaintext)})
		// The untouched seed, then one flip in each field.
		f.Add(blob, []byte(tc.aad), uint16(0), byte(0))
		idEnd := 2 + int(blob[1])
		for _, pos := range []int{0, 1, 2, idEnd - 1, idEnd, idEnd + 11, idEnd + 12, len(blob) - 17, len(blob) - 1} {
			f.Add(blob, []byte(tc.aad), uint16(pos), byte(1))
		}
		f.Add(blob[:len(blob)-1], []byte(tc.aad), uint16(0), byte(0))
		f.Add(blob, []byte(tc.aad+"x"), uint16(0), byte(0))
	}
	f.Fuzz(func(t *testing.T, blob, aad []byte, pos uint16, mask byte) {
		blob = bytes.Clone(blob)
		if mask != 0 && len(blob) > 0 {
			blob[int(pos)%len(blob)] ^= mask
		}
		got, err := k.Open(blob, aad)
		if err != nil {
			if got != nil {
				t.Fatal("Open returned bytes with an error")
			}
			return
		}
		for _, s := range seeds {
			if bytes.Equal(blob, s.blob) && bytes.Equal(aad, s.aad) {
				if !bytes.Equal(got, s.plaintext) {
					t.Fatalf("seed opened to %q, want %q", got, s.plaintext)
				}
				return
			}
		}
		t.Fatalf("Open accepted a value that is not an untouched seed: blob %x aad %q", blob, aad)
	})
}
