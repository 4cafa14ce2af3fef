package seal_test

import (
	"bytes"
	"testing"

	"warden/internal/seal"
)

// A 256-byte secret (an API token or a private key in PEM is in this range),
// bound to its row as the credential package will do.
var (
	benchSecret = bytes.Repeat([]byte{'s'}, 256)
	benchAAD    = []byte("credential:cred_0123456789abcdefghjk:v12")
)

func BenchmarkSeal256(b *testing.B) {
	k := mustOpen(b, seal.GenerateMasterKey(), newMemStore())
	b.SetBytes(int64(len(benchSecret)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(benchSecret, benchAAD); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen256(b *testing.B) {
	k := mustOpen(b, seal.GenerateMasterKey(), newMemStore())
	c, err := k.Seal(benchSecret, benchAAD)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchSecret)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(c, benchAAD); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen256Parallel(b *testing.B) {
	k := mustOpen(b, seal.GenerateMasterKey(), newMemStore())
	c, err := k.Seal(benchSecret, benchAAD)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchSecret)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Open(c, benchAAD); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
