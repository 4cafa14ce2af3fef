package seal_test

import (
	"errors"
	"testing"

	"warden"
	"warden/internal/seal"
)

// populated returns a store with two data keys and two signing keys under
// master, and a value sealed with each data key.
func populated(t *testing.T, master []byte) (s *memStore, sealed map[string][]byte) {
	t.Helper()
	s = newMemStore()
	k, err := seal.Open(ctx, master, s)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	sealed = map[string][]byte{"credential:a:v1": mustSeal(t, k, "secret-a", "credential:a:v1")}
	if _, err := k.RotateDataKey(ctx); err != nil {
		t.Fatal(err)
	}
	sealed["credential:b:v1"] = mustSeal(t, k, "secret-b", "credential:b:v1")
	for _, name := range []string{"token", "audit"} {
		if _, _, err := k.Signer(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	return s, sealed
}

func TestRotateMaster(t *testing.T) {
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	s, sealed := populated(t, oldKey)
	before := s.snapshot()
	n, err := seal.RotateMaster(ctx, s, oldKey, newKey)
	if err != nil || n != 4 {
		t.Fatalf("RotateMaster = %d, %v; want 4", n, err)
	}
	after := s.snapshot()
	for id, r := range after {
		b := before[id]
		if r.Purpose != b.Purpose || !r.CreatedAt.Equal(b.CreatedAt) || string(r.Wrapped) == string(b.Wrapped) {
			t.Fatalf("record %s: only Wrapped may change, and it must", id)
		}
	}
	if _, err := seal.Open(ctx, oldKey, s); !errors.Is(err, seal.ErrWrongMasterKey) || !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("old master key after rotation: %v, want ErrWrongMasterKey", err)
	}
	k := mustOpen(t, newKey, s)
	for aad, c := range sealed {
		if _, err := k.Open(c, []byte(aad)); err != nil {
			t.Fatalf("value %s after master rotation: %v", aad, err)
		}
	}
	// Running it again is a no-op, not an error.
	if n, err := seal.RotateMaster(ctx, s, oldKey, newKey); err != nil || n != 0 {
		t.Fatalf("second RotateMaster = %d, %v; want 0, nil", n, err)
	}
	sameRecords(t, s.snapshot(), after)
}

func TestRotateMasterRefusals(t *testing.T) {
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	cases := map[string]struct {
		old, new []byte
		damage   func(s *memStore)
		is       error
		code     warden.Code
	}{
		"wrong old key": {old: seal.GenerateMasterKey(), new: newKey, is: seal.ErrWrongMasterKey, code: warden.CodeInvalid},
		"same key":      {old: oldKey, new: oldKey, code: warden.CodeInvalid},
		"short new key": {old: oldKey, new: newKey[:16], code: warden.CodeInvalid},
		"all-zero new":  {old: oldKey, new: make([]byte, 32), code: warden.CodeInvalid},
		"damaged record": {old: oldKey, new: newKey, is: seal.ErrDamaged, code: warden.CodeInternal,
			damage: func(s *memStore) {
				r := s.snapshot()["sign:audit.1"]
				r.Wrapped[30] ^= 4
				s.put(r)
			}},
		"store down": {old: oldKey, new: newKey, code: warden.CodeUnavailable,
			damage: func(s *memStore) {
				s.beforeRepl = func([]seal.Rewrap) error { return errors.New("connection reset") }
			}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, _ := populated(t, oldKey)
			if tc.damage != nil {
				tc.damage(s)
			}
			before := s.snapshot()
			n, err := seal.RotateMaster(ctx, s, tc.old, tc.new)
			if n != 0 || !warden.IsCode(err, tc.code) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("RotateMaster = %d, %v; want code %q", n, err, tc.code)
			}
			sameRecords(t, s.snapshot(), before)
		})
	}
}

func TestRotateMasterPicksUpConcurrentInserts(t *testing.T) {
	// A replica still on the old key creates a signing key while the
	// rotation runs (between its read and its write). The rotation must not
	// leave that key behind under the old master.
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	s, _ := populated(t, oldKey)
	replica := mustOpen(t, oldKey, s)
	s.beforeRepl = func([]seal.Rewrap) error {
		s.beforeRepl = nil
		_, _, err := replica.Signer(ctx, "late")
		return err
	}
	n, err := seal.RotateMaster(ctx, s, oldKey, newKey)
	if err != nil || n != 5 {
		t.Fatalf("RotateMaster = %d, %v; want 5 (4 + the late key)", n, err)
	}
	mustOpen(t, newKey, s) // strict: every record opens under the new key
}

func TestRotateMasterRetriesAConflict(t *testing.T) {
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	s, _ := populated(t, oldKey)
	conflicts := 0
	s.beforeRepl = func([]seal.Rewrap) error {
		if conflicts < 2 {
			conflicts++
			return warden.Errorf(warden.CodeConflict, "changed")
		}
		return nil
	}
	if n, err := seal.RotateMaster(ctx, s, oldKey, newKey); err != nil || n != 4 {
		t.Fatalf("RotateMaster after 2 conflicts = %d, %v", n, err)
	}
	s.beforeRepl = func([]seal.Rewrap) error { return warden.Errorf(warden.CodeConflict, "changed") }
	s2, _ := populated(t, oldKey)
	s2.beforeRepl = s.beforeRepl
	before := s2.snapshot()
	if _, err := seal.RotateMaster(ctx, s2, oldKey, newKey); !warden.IsCode(err, warden.CodeConflict) {
		t.Fatalf("RotateMaster with a store that always conflicts: %v", err)
	}
	sameRecords(t, s2.snapshot(), before)
}

func TestRollingMasterRotationWithPreviousKey(t *testing.T) {
	// The zero-downtime procedure of docs/seal.md: replicas restart with the
	// new key and the previous one, then RotateMaster, then the previous key
	// is dropped.
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	s, sealed := populated(t, oldKey)
	oldReplica := mustOpen(t, oldKey, s)
	newReplica := mustOpen(t, newKey, s, oldKey) // step 1: opens records under either key
	for aad, c := range sealed {
		if _, err := newReplica.Open(c, []byte(aad)); err != nil {
			t.Fatalf("new replica, before rotation: %v", err)
		}
	}
	// Keys made by the new replica are wrapped by the new key...
	if _, _, err := newReplica.Signer(ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	// ...and the old replica keeps working with what it holds.
	if _, err := oldReplica.Seal([]byte("x"), []byte("a:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Open(ctx, newKey, s); !errors.Is(err, seal.ErrWrongMasterKey) {
		t.Fatalf("new key alone before rotation: %v, want refusal", err)
	}
	n, err := seal.RotateMaster(ctx, s, oldKey, newKey) // step 2
	if err != nil || n != 4 {
		t.Fatalf("RotateMaster = %d, %v; want the 4 old records (the fresh one is already new)", n, err)
	}
	mustOpen(t, newKey, s) // step 3: the previous key is no longer needed
}
