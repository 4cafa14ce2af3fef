// Package sealtest holds the conformance suite for seal.KeyStore. Every
// implementation (SQLite, PostgreSQL) runs it:
//
//	func TestKeyStore(t *testing.T) {
//		sealtest.KeyStore(t, func(t *testing.T) seal.KeyStore { return openFreshStore(t) })
//	}
package sealtest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/seal"
)

// KeyStore runs the seal.KeyStore contract against stores made by open, which
// must return a new, empty store for each call (a fresh database or schema).
func KeyStore(t *testing.T, open func(t *testing.T) seal.KeyStore) {
	t.Helper()
	ctx := context.Background()
	created := time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC) // microsecond precision

	rec := func(id, purpose string, wrapped ...byte) seal.KeyRecord {
		return seal.KeyRecord{ID: id, Purpose: purpose, Wrapped: wrapped, CreatedAt: created}
	}
	list := func(t *testing.T, s seal.KeyStore) map[string]seal.KeyRecord {
		t.Helper()
		recs, err := s.ListKeys(ctx)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		m := map[string]seal.KeyRecord{}
		for _, r := range recs {
			if _, dup := m[r.ID]; dup {
				t.Fatalf("ListKeys returned id %q twice", r.ID)
			}
			m[r.ID] = r
		}
		return m
	}
	same := func(t *testing.T, got, want seal.KeyRecord) {
		t.Helper()
		if got.ID != want.ID || got.Purpose != want.Purpose || !bytes.Equal(got.Wrapped, want.Wrapped) || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("record %q: got id=%q purpose=%q wrapped=%x created=%s, want purpose=%q wrapped=%x created=%s",
				want.ID, got.ID, got.Purpose, got.Wrapped, got.CreatedAt, want.Purpose, want.Wrapped, want.CreatedAt)
		}
	}
	isConflict := func(t *testing.T, err error, what string) {
		t.Helper()
		if !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("%s: got error %v (code %q), want code %q", what, err, warden.ErrorCode(err), warden.CodeConflict)
		}
	}

	t.Run("empty", func(t *testing.T) {
		s := open(t)
		if got := list(t, s); len(got) != 0 {
			t.Fatalf("new store lists %d records, want 0", len(got))
		}
	})

	t.Run("insert and list keep every field", func(t *testing.T) {
		s := open(t)
		full := make([]byte, 255) // the largest wrapped key, every byte value
		for i := range full {
			full[i] = byte(255 - i)
		}
		want := []seal.KeyRecord{
			rec("dek.1", "dek", 1, 0, 0, 2, 0xff),
			rec("sign:token.1", "sign:token", full...),
			rec("dek.2", "dek", 9),
		}
		for _, r := range want {
			if err := s.InsertKey(ctx, r); err != nil {
				t.Fatalf("InsertKey(%s): %v", r.ID, err)
			}
		}
		got := list(t, s)
		if len(got) != len(want) {
			t.Fatalf("ListKeys returned %d records, want %d", len(got), len(want))
		}
		for _, w := range want {
			same(t, got[w.ID], w)
		}
	})

	t.Run("no aliasing", func(t *testing.T) {
		s := open(t)
		r := rec("dek.1", "dek", 1, 2, 3)
		if err := s.InsertKey(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Wrapped[0] = 99 // the caller's slice changes after insert
		got := list(t, s)["dek.1"]
		same(t, got, rec("dek.1", "dek", 1, 2, 3))
		got.Wrapped[1] = 99 // the returned slice changes
		same(t, list(t, s)["dek.1"], rec("dek.1", "dek", 1, 2, 3))
	})

	t.Run("insert of an existing id is a conflict and changes nothing", func(t *testing.T) {
		s := open(t)
		orig := rec("sign:audit.1", "sign:audit", 1, 2, 3)
		if err := s.InsertKey(ctx, orig); err != nil {
			t.Fatal(err)
		}
		dup := seal.KeyRecord{ID: orig.ID, Purpose: "dek", Wrapped: []byte{7}, CreatedAt: created.Add(time.Hour)}
		isConflict(t, s.InsertKey(ctx, dup), "second InsertKey with the same id")
		got := list(t, s)
		if len(got) != 1 {
			t.Fatalf("%d records after a conflicting insert, want 1", len(got))
		}
		same(t, got[orig.ID], orig)
	})

	t.Run("racing inserts of one id: exactly one wins", func(t *testing.T) {
		s := open(t)
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs[i] = s.InsertKey(ctx, rec("sign:token.1", "sign:token", byte(i)))
			})
		}
		wg.Wait()
		wins := 0
		var winner byte
		for i, err := range errs {
			if err == nil {
				wins++
				winner = byte(i)
				continue
			}
			isConflict(t, err, fmt.Sprintf("racing insert %d", i))
		}
		if wins != 1 {
			t.Fatalf("%d racing inserts succeeded, want exactly 1", wins)
		}
		same(t, list(t, s)["sign:token.1"], rec("sign:token.1", "sign:token", winner))
	})

	t.Run("replace wrapped", func(t *testing.T) {
		s := open(t)
		a, b, c := rec("dek.1", "dek", 1), rec("dek.2", "dek", 2), rec("sign:token.1", "sign:token", 3)
		for _, r := range []seal.KeyRecord{a, b, c} {
			if err := s.InsertKey(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.ReplaceWrapped(ctx, nil); err != nil {
			t.Fatalf("ReplaceWrapped(empty): %v", err)
		}
		err := s.ReplaceWrapped(ctx, []seal.Rewrap{
			{ID: "dek.1", Old: []byte{1}, New: []byte{11, 0, 11}},
			{ID: "sign:token.1", Old: []byte{3}, New: []byte{33}},
		})
		if err != nil {
			t.Fatalf("ReplaceWrapped: %v", err)
		}
		got := list(t, s)
		same(t, got["dek.1"], rec("dek.1", "dek", 11, 0, 11))
		same(t, got["dek.2"], b)
		same(t, got["sign:token.1"], rec("sign:token.1", "sign:token", 33))
	})

	t.Run("replace wrapped is all or none", func(t *testing.T) {
		cases := map[string][]seal.Rewrap{
			"one stale old value": {
				{ID: "dek.1", Old: []byte{1}, New: []byte{11}},
				{ID: "dek.2", Old: []byte{99}, New: []byte{22}}, // holds 2, not 99
			},
			"one unknown id": {
				{ID: "dek.1", Old: []byte{1}, New: []byte{11}},
				{ID: "dek.3", Old: []byte{3}, New: []byte{33}},
			},
			"stale first": {
				{ID: "dek.2", Old: []byte{1}, New: []byte{22}},
				{ID: "dek.1", Old: []byte{1}, New: []byte{11}},
			},
		}
		for name, items := range cases {
			t.Run(name, func(t *testing.T) {
				s := open(t)
				a, b := rec("dek.1", "dek", 1), rec("dek.2", "dek", 2)
				for _, r := range []seal.KeyRecord{a, b} {
					if err := s.InsertKey(ctx, r); err != nil {
						t.Fatal(err)
					}
				}
				isConflict(t, s.ReplaceWrapped(ctx, slices.Clone(items)), "ReplaceWrapped")
				got := list(t, s)
				if len(got) != 2 {
					t.Fatalf("%d records after a failed replace, want 2", len(got))
				}
				same(t, got["dek.1"], a)
				same(t, got["dek.2"], b)
			})
		}
	})

	t.Run("a keyring works on the store", func(t *testing.T) {
		s := open(t)
		oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
		k, err := seal.Open(ctx, oldKey, s)
		if err != nil {
			t.Fatalf("seal.Open on an empty store: %v", err)
		}
		if _, _, err := k.Signer(ctx, "token"); err != nil {
			t.Fatalf("Signer: %v", err)
		}
		aad := []byte("credential:cred_1:v1")
		sealed, err := k.Seal([]byte("canary-secret"), aad)
		if err != nil {
			t.Fatal(err)
		}
		k.Close()
		if n, err := seal.RotateMaster(ctx, s, oldKey, newKey); err != nil || n != 2 {
			t.Fatalf("RotateMaster = %d, %v; want 2 keys re-wrapped", n, err)
		}
		if _, err := seal.Open(ctx, oldKey, s); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("Open with the old master key after rotation: %v, want code %q", err, warden.CodeInvalid)
		}
		k2, err := seal.Open(ctx, newKey, s)
		if err != nil {
			t.Fatalf("Open with the new master key: %v", err)
		}
		defer k2.Close()
		got, err := k2.Open(sealed, aad)
		if err != nil || string(got) != "canary-secret" {
			t.Fatalf("Open after master rotation = %q, %v", got, err)
		}
	})
}
