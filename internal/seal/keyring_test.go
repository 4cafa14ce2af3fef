package seal_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/seal"
)

var ctx = context.Background()

func mustOpen(t testing.TB, master []byte, s seal.KeyStore, previous ...[]byte) *seal.Keyring {
	t.Helper()
	k, err := seal.Open(ctx, master, s, previous...)
	if err != nil {
		t.Fatalf("seal.Open: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

func mustSeal(t testing.TB, k *seal.Keyring, plaintext, aad string) []byte {
	t.Helper()
	c, err := k.Seal([]byte(plaintext), []byte(aad))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return c
}

// cannotOpen asserts the error every failed Open must give: code internal,
// cause ErrCannotOpen, no plaintext in the text.
func cannotOpen(t testing.TB, got []byte, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: opened (%q), want an error", what, got)
	}
	if got != nil {
		t.Fatalf("%s: returned bytes with the error", what)
	}
	if !errors.Is(err, seal.ErrCannotOpen) || !warden.IsCode(err, warden.CodeInternal) {
		t.Fatalf("%s: error %v (code %q), want ErrCannotOpen with code internal", what, err, warden.ErrorCode(err))
	}
}

func TestOpenEmptyStoreCreatesOneDataKey(t *testing.T) {
	s := newMemStore()
	master := seal.GenerateMasterKey()
	k := mustOpen(t, master, s)
	recs := s.snapshot()
	if len(recs) != 1 || recs["dek.1"].Purpose != seal.PurposeDEK {
		t.Fatalf("store after first Open = %v, want one record dek.1", recs)
	}
	if k.DataKeyID() != "dek.1" {
		t.Fatalf("DataKeyID = %q", k.DataKeyID())
	}
	// A restart (a second Open) finds the key and creates nothing.
	k2 := mustOpen(t, master, s)
	sameRecords(t, s.snapshot(), recs)
	c := mustSeal(t, k, "canary-7f3a", "credential:cred_1:v1")
	got, err := k2.Open(c, []byte("credential:cred_1:v1"))
	if err != nil || string(got) != "canary-7f3a" {
		t.Fatalf("a restarted keyring opens %q, %v", got, err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	for _, n := range []int{0, 1, 15, 16, 17, 256, 64 << 10} {
		pt := bytes.Repeat([]byte{'s'}, n)
		aad := []byte(fmt.Sprintf("credential:cred_x:v%d", n))
		c, err := k.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 8 && bytes.Contains(c, pt[:8]) {
			t.Fatalf("ciphertext of %d bytes contains the plaintext", n)
		}
		if want := 1 + 1 + len("dek.1") + 12 + n + 16; len(c) != want {
			t.Fatalf("sealed length %d, want %d", len(c), want)
		}
		got, err := k.Open(c, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes: %v", n, err)
		}
	}
	a := mustSeal(t, k, "same", "credential:c:v1")
	b := mustSeal(t, k, "same", "credential:c:v1")
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are equal: the nonce is not random")
	}
	if id, err := seal.KeyID(a); err != nil || id != "dek.1" {
		t.Fatalf("KeyID = %q, %v", id, err)
	}
}

func TestSealRequiresAAD(t *testing.T) {
	k := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	for _, aad := range [][]byte{nil, {}} {
		if _, err := k.Seal([]byte("x"), aad); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("Seal with empty aad: %v, want code invalid", err)
		}
	}
}

func TestOpenWrongAAD(t *testing.T) {
	k := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	c := mustSeal(t, k, "canary-secret", "credential:cred_a:v2")
	for _, aad := range []string{
		"credential:cred_b:v2", // copied to another row
		"credential:cred_a:v1", // another version
		"credential:cred_a:v2 ",
		"credential:cred_a:v",
		"",
	} {
		got, err := k.Open(c, []byte(aad))
		cannotOpen(t, got, err, fmt.Sprintf("aad %q", aad))
		if strings.Contains(err.Error(), "canary") {
			t.Fatal("error text contains the plaintext")
		}
	}
}

func TestOpenWithWrongMasterKey(t *testing.T) {
	s := newMemStore()
	mustOpen(t, seal.GenerateMasterKey(), s)
	before := s.snapshot()
	k, err := seal.Open(ctx, seal.GenerateMasterKey(), s)
	if k != nil || err == nil {
		t.Fatal("Open with a wrong master key succeeded")
	}
	if !errors.Is(err, seal.ErrWrongMasterKey) || !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("error %v, want ErrWrongMasterKey with code invalid", err)
	}
	var we *warden.Error
	if !errors.As(err, &we) || we.Message != "the master key does not open this data (wrong WARDEN_MASTER_KEY?)" {
		t.Fatalf("message %q", err.Error())
	}
	// It must not "repair" anything, e.g. by creating a data key it can open.
	sameRecords(t, s.snapshot(), before)
}

func TestOpenRefusesBadMasterKeys(t *testing.T) {
	for name, key := range map[string][]byte{"nil": nil, "short": make([]byte, 16), "zeros": make([]byte, 32)} {
		if _, err := seal.Open(ctx, key, newMemStore()); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("%s master key: %v, want code invalid", name, err)
		}
	}
}

func TestOpenStoreDown(t *testing.T) {
	s := newMemStore()
	s.listErr = errors.New("connection refused")
	if _, err := seal.Open(ctx, seal.GenerateMasterKey(), s); !warden.IsCode(err, warden.CodeUnavailable) {
		t.Fatalf("Open with the store down: %v, want code unavailable", err)
	}
}

func TestOpenRefusesDamagedOrMovedRecords(t *testing.T) {
	master := seal.GenerateMasterKey()
	setup := func(t *testing.T) *memStore {
		s := newMemStore()
		k := mustOpen(t, master, s)
		if _, err := k.RotateDataKey(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.Signer(ctx, "token"); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := map[string]func(s *memStore){
		"flipped byte in the ciphertext": func(s *memStore) {
			r := s.snapshot()["dek.2"]
			r.Wrapped[len(r.Wrapped)-1] ^= 1
			s.put(r)
		},
		"flipped byte in the nonce": func(s *memStore) {
			r := s.snapshot()["dek.1"]
			r.Wrapped[10] ^= 0x80
			s.put(r)
		},
		"wrapped blob moved to another id": func(s *memStore) {
			a, b := s.snapshot()["dek.1"], s.snapshot()["dek.2"]
			a.Wrapped, b.Wrapped = b.Wrapped, a.Wrapped
			s.put(a)
			s.put(b)
		},
		"signing key relabelled as a data key": func(s *memStore) {
			r := s.snapshot()["sign:token.1"]
			delete(s.recs, r.ID)
			r.ID, r.Purpose = "dek.3", "dek"
			s.put(r)
		},
		"purpose changed": func(s *memStore) {
			r := s.snapshot()["sign:token.1"]
			r.Purpose = "sign:audit"
			s.put(r)
		},
		"truncated": func(s *memStore) {
			r := s.snapshot()["dek.1"]
			r.Wrapped = r.Wrapped[:20]
			s.put(r)
		},
		"malformed id": func(s *memStore) {
			r := s.snapshot()["dek.1"]
			delete(s.recs, r.ID)
			r.ID = "dek.01"
			s.put(r)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			s := setup(t)
			damage(s)
			k, err := seal.Open(ctx, master, s)
			if k != nil || !errors.Is(err, seal.ErrDamaged) || !warden.IsCode(err, warden.CodeInternal) {
				t.Fatalf("Open = %v, %v; want ErrDamaged with code internal", k, err)
			}
		})
	}
}

func TestTamperedCiphertextNeverOpens(t *testing.T) {
	k := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	// Keys dek.1..dek.3 exist, so a flipped bit in the id can name another
	// real data key ('3' ^ 1 == '2'), not only an unknown one.
	for range 2 {
		if _, err := k.RotateDataKey(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := k.Signer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	aad := []byte("credential:cred_t:v1")
	c := mustSeal(t, k, "canary-0123456789", string(aad))
	if id, _ := seal.KeyID(c); id != "dek.3" {
		t.Fatalf("sealed under %q, want dek.3", id)
	}
	field := func(i int) string {
		idEnd := 2 + int(c[1])
		switch {
		case i == 0:
			return "format"
		case i == 1:
			return "id length"
		case i < idEnd:
			return "key id"
		case i < idEnd+12:
			return "nonce"
		case i < len(c)-16:
			return "ciphertext"
		default:
			return "tag"
		}
	}
	seen := map[string]int{}
	for i := range c {
		for bit := range 8 {
			d := bytes.Clone(c)
			d[i] ^= 1 << bit
			got, err := k.Open(d, aad)
			cannotOpen(t, got, err, fmt.Sprintf("bit %d of byte %d (%s) flipped", bit, i, field(i)))
			seen[field(i)]++
		}
	}
	if len(seen) != 6 {
		t.Fatalf("flips covered fields %v, want all six", seen)
	}
	// Truncations, extensions.
	for n := range len(c) {
		got, err := k.Open(c[:n], aad)
		cannotOpen(t, got, err, fmt.Sprintf("truncated to %d bytes", n))
	}
	got, err := k.Open(append(bytes.Clone(c), 0), aad)
	cannotOpen(t, got, err, "one byte appended")
	// The untouched value still opens: the failures above were the flips.
	if got, err := k.Open(c, aad); err != nil || string(got) != "canary-0123456789" {
		t.Fatalf("original does not open: %v", err)
	}
}

func TestOpenHeaderFields(t *testing.T) {
	k := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	kid, _, err := k.Signer(ctx, "token")
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("credential:c:v1")
	c := mustSeal(t, k, "secret", string(aad))
	body := c[2+len("dek.1"):]
	withID := func(id string) []byte {
		return append(append([]byte{1, byte(len(id))}, id...), body...)
	}
	cases := map[string]struct {
		blob    []byte
		unknown bool
	}{
		"format 0":             {blob: append([]byte{0}, c[1:]...)},
		"format 2":             {blob: append([]byte{2}, c[1:]...)},
		"id length 0":          {blob: append([]byte{1, 0}, c[2:]...)},
		"id length too long":   {blob: append([]byte{1, 255}, c[2:]...)},
		"id length one less":   {blob: append([]byte{1, 4}, c[2:]...)},
		"id with a bad byte":   {blob: withID("dek.\x00")},
		"id of unknown key":    {blob: withID("dek.9"), unknown: true},
		"id of a signing key":  {blob: withID(kid)},
		"id of another format": {blob: withID("DEK.1")},
		"empty":                {blob: nil},
		"header only":          {blob: c[:2+len("dek.1")+12]},
	}
	for name, tc := range cases {
		got, err := k.Open(tc.blob, aad)
		cannotOpen(t, got, err, name)
		if errors.Is(err, seal.ErrUnknownKey) != tc.unknown {
			t.Fatalf("%s: errors.Is(err, ErrUnknownKey) = %v, want %v (%v)", name, !tc.unknown, tc.unknown, err)
		}
	}
}

func TestCiphertextOfAnotherInstallation(t *testing.T) {
	// Both keyrings call their first data key dek.1; the ids agree, the keys do not.
	a := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	b := mustOpen(t, seal.GenerateMasterKey(), newMemStore())
	c := mustSeal(t, a, "x", "credential:c:v1")
	got, err := b.Open(c, []byte("credential:c:v1"))
	cannotOpen(t, got, err, "ciphertext of another keyring")
}

func TestRotateDataKeyKeepsOldDataReadable(t *testing.T) {
	s := newMemStore()
	k := mustOpen(t, seal.GenerateMasterKey(), s)
	old := mustSeal(t, k, "old-secret", "credential:c:v1")
	kid, err := k.RotateDataKey(ctx)
	if err != nil || kid != "dek.2" || k.DataKeyID() != "dek.2" {
		t.Fatalf("RotateDataKey = %q, %v; DataKeyID %q", kid, err, k.DataKeyID())
	}
	fresh := mustSeal(t, k, "new-secret", "credential:c:v2")
	if id, _ := seal.KeyID(fresh); id != "dek.2" {
		t.Fatalf("new value sealed under %q", id)
	}
	if got, err := k.Open(old, []byte("credential:c:v1")); err != nil || string(got) != "old-secret" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	// Reseal moves the old value to the active key; a current one is left alone.
	moved, changed, err := k.Reseal(old, []byte("credential:c:v1"))
	if err != nil || !changed {
		t.Fatalf("Reseal = %v, %v", changed, err)
	}
	if id, _ := seal.KeyID(moved); id != "dek.2" {
		t.Fatalf("resealed under %q", id)
	}
	if got, err := k.Open(moved, []byte("credential:c:v1")); err != nil || string(got) != "old-secret" {
		t.Fatalf("resealed value: %q, %v", got, err)
	}
	same, changed, err := k.Reseal(fresh, []byte("credential:c:v2"))
	if err != nil || changed || !bytes.Equal(same, fresh) {
		t.Fatalf("Reseal of a current value = %v, %v", changed, err)
	}
	if _, _, err := k.Reseal(old, []byte("credential:other:v1")); !errors.Is(err, seal.ErrCannotOpen) {
		t.Fatalf("Reseal with wrong aad: %v", err)
	}
	// Keys lists both, newest active.
	var active []string
	for _, ki := range k.Keys() {
		if ki.Active {
			active = append(active, ki.ID)
		}
	}
	if len(k.Keys()) != 2 || len(active) != 1 || active[0] != "dek.2" {
		t.Fatalf("Keys = %+v", k.Keys())
	}
}

func TestReplicasSeeEachOthersKeys(t *testing.T) {
	s := newMemStore()
	master := seal.GenerateMasterKey()
	a := mustOpen(t, master, s)
	b := mustOpen(t, master, s)
	if _, err := a.RotateDataKey(ctx); err != nil {
		t.Fatal(err)
	}
	c := mustSeal(t, a, "from-a", "credential:c:v1")
	// b has not heard of dek.2; the miss reloads the store.
	if got, err := b.Open(c, []byte("credential:c:v1")); err != nil || string(got) != "from-a" {
		t.Fatalf("replica b opens a's value: %q, %v", got, err)
	}
	kid, priv, err := a.Signer(ctx, "token")
	if err != nil {
		t.Fatal(err)
	}
	b.SetNow(func() time.Time { return time.Now().Add(time.Hour) }) // past the miss throttle
	pub, ok := b.PublicKey(kid)
	if !ok || !pub.Equal(priv.Public()) {
		t.Fatalf("replica b PublicKey(%q) = %v", kid, ok)
	}
	// b's next seal uses the newest data key too once it has loaded it.
	if b.DataKeyID() != "dek.2" {
		t.Fatalf("b seals with %q after reload", b.DataKeyID())
	}
}

func TestMissReloadIsThrottled(t *testing.T) {
	s := newMemStore()
	k := mustOpen(t, seal.GenerateMasterKey(), s)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k.SetNow(func() time.Time { return now })
	c := mustSeal(t, k, "x", "a:1")
	forged := append([]byte{1, 5}, "dek.7"...)
	forged = append(forged, c[2+5:]...)

	calls := s.listCalls()
	for range 10 {
		if _, err := k.Open(forged, []byte("a:1")); !errors.Is(err, seal.ErrUnknownKey) {
			t.Fatalf("forged id: %v", err)
		}
	}
	if got := s.listCalls() - calls; got != 1 {
		t.Fatalf("10 misses within the interval read the store %d times, want 1", got)
	}
	now = now.Add(seal.MissReloadInterval)
	if _, ok := k.PublicKey("sign:token.5"); ok {
		t.Fatal("unknown kid verified")
	}
	if got := s.listCalls() - calls; got != 2 {
		t.Fatalf("a miss after the interval: %d store reads in all, want 2", got)
	}
}

func TestSigner(t *testing.T) {
	s := newMemStore()
	k := mustOpen(t, seal.GenerateMasterKey(), s)
	kid, priv, err := k.Signer(ctx, "token")
	if err != nil || kid != "sign:token.1" {
		t.Fatalf("Signer = %q, %v", kid, err)
	}
	kid2, priv2, err := k.Signer(ctx, "token")
	if err != nil || kid2 != kid || !priv2.Equal(priv) {
		t.Fatal("second Signer call returned another key")
	}
	akid, apriv, err := k.Signer(ctx, "audit")
	if err != nil || akid != "sign:audit.1" || apriv.Equal(priv) {
		t.Fatalf("Signer(audit) = %q, %v", akid, err)
	}
	msg := []byte("header.payload")
	sig := ed25519.Sign(priv, msg)
	pub, ok := k.PublicKey(kid)
	if !ok || !ed25519.Verify(pub, msg, sig) {
		t.Fatal("PublicKey does not verify the signer's signature")
	}
	pub[0] ^= 1 // a caller scribbling on the returned key must not break the keyring
	if pub2, _ := k.PublicKey(kid); !ed25519.Verify(pub2, msg, sig) {
		t.Fatal("PublicKey returned the keyring's own slice")
	}
	for _, bad := range []string{"", "Token", "to ken", "-x", "a:b", strings.Repeat("a", 33)} {
		if _, _, err := k.Signer(ctx, bad); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("Signer(%q): %v, want code invalid", bad, err)
		}
	}
	for _, id := range []string{"dek.1", "sign:token.2", "", "sign:token.1\n"} {
		if _, ok := k.PublicKey(id); ok {
			t.Fatalf("PublicKey(%q) found a key", id)
		}
	}
	// Rotation: a new key signs, the old one still verifies.
	nkid, err := k.RotateSigner(ctx, "token")
	if err != nil || nkid != "sign:token.2" {
		t.Fatalf("RotateSigner = %q, %v", nkid, err)
	}
	if cur, _, _ := k.Signer(ctx, "token"); cur != nkid {
		t.Fatalf("Signer after rotation = %q", cur)
	}
	if pub, ok := k.PublicKey(kid); !ok || !ed25519.Verify(pub, msg, sig) {
		t.Fatal("old signing key no longer verifies after rotation")
	}
}

func TestSignerSurvivesRestart(t *testing.T) {
	s := newMemStore()
	master := seal.GenerateMasterKey()
	k := mustOpen(t, master, s)
	kid, priv, err := k.Signer(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	k2 := mustOpen(t, master, s)
	kid2, priv2, err := k2.Signer(ctx, "audit")
	if err != nil || kid2 != kid || !priv2.Equal(priv) {
		t.Fatal("a restarted keyring made a new signing key instead of loading the stored one")
	}
}

func TestConcurrentSignerMakesOneKey(t *testing.T) {
	s := newMemStore()
	master := seal.GenerateMasterKey()
	replicas := []*seal.Keyring{mustOpen(t, master, s), mustOpen(t, master, s), mustOpen(t, master, s)}
	const perReplica = 16
	type result struct {
		kid string
		pub ed25519.PublicKey
		err error
	}
	results := make(chan result, len(replicas)*perReplica)
	var wg sync.WaitGroup
	for _, k := range replicas {
		for range perReplica {
			wg.Go(func() {
				kid, priv, err := k.Signer(ctx, "token")
				var pub ed25519.PublicKey
				if err == nil {
					pub = priv.Public().(ed25519.PublicKey)
				}
				results <- result{kid, pub, err}
			})
		}
	}
	wg.Wait()
	close(results)
	var first *result
	for r := range results {
		if r.err != nil {
			t.Fatalf("Signer: %v", r.err)
		}
		if first == nil {
			first = &r
			continue
		}
		if r.kid != first.kid || !r.pub.Equal(first.pub) {
			t.Fatalf("concurrent Signer calls returned different keys: %s and %s", r.kid, first.kid)
		}
	}
	n := 0
	for _, r := range s.snapshot() {
		if r.Purpose == "sign:token" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("store holds %d sign:token keys, want 1", n)
	}
}

func TestSignerInsertConflictLoadsTheWinner(t *testing.T) {
	// Replica b creates sign:token.1 between a's decision to create it and
	// a's insert: a's insert conflicts, and a must adopt b's key.
	s := newMemStore()
	master := seal.GenerateMasterKey()
	a := mustOpen(t, master, s)
	b := mustOpen(t, master, s)
	var bKid string
	var bPub ed25519.PublicKey
	s.beforeInsert = func(rec seal.KeyRecord) {
		s.beforeInsert = nil // b's own insert runs unhooked (a's call is sequential here)
		kid, priv, err := b.Signer(ctx, "token")
		if err != nil {
			t.Errorf("b.Signer: %v", err)
			return
		}
		bKid, bPub = kid, priv.Public().(ed25519.PublicKey)
	}
	kid, priv, err := a.Signer(ctx, "token")
	if err != nil {
		t.Fatalf("a.Signer after a lost race: %v", err)
	}
	if kid != bKid || !bPub.Equal(priv.Public()) {
		t.Fatalf("a uses %s, b made %s: two keys for one name", kid, bKid)
	}
}

func TestRotateDataKeyRace(t *testing.T) {
	// Replica b rotates between a's reload and a's insert: a keeps b's key
	// rather than failing or making a second one.
	s := newMemStore()
	master := seal.GenerateMasterKey()
	a := mustOpen(t, master, s)
	b := mustOpen(t, master, s)
	s.beforeInsert = func(seal.KeyRecord) {
		s.beforeInsert = nil
		if _, err := b.RotateDataKey(ctx); err != nil {
			t.Errorf("b.RotateDataKey: %v", err)
		}
	}
	kid, err := a.RotateDataKey(ctx)
	if err != nil || kid != "dek.2" {
		t.Fatalf("a.RotateDataKey = %q, %v; want b's dek.2", kid, err)
	}
	if got := len(s.snapshot()); got != 2 {
		t.Fatalf("store holds %d keys, want 2", got)
	}
	c := mustSeal(t, a, "x", "a:1")
	if got, err := b.Open(c, []byte("a:1")); err != nil || string(got) != "x" {
		t.Fatalf("b opens a's value: %v", err)
	}
}

func TestFirstKeyNotStoredFailsOpen(t *testing.T) {
	s := &failingInsert{memStore: newMemStore()}
	k, err := seal.Open(ctx, seal.GenerateMasterKey(), s)
	if k != nil || !warden.IsCode(err, warden.CodeUnavailable) {
		t.Fatalf("Open when the first key cannot be stored: %v, want code unavailable", err)
	}
	if len(s.snapshot()) != 0 {
		t.Fatal("a failed insert left a record")
	}
}

type failingInsert struct{ *memStore }

func (f *failingInsert) InsertKey(context.Context, seal.KeyRecord) error {
	return errors.New("disk full")
}

func TestReloadKeepsWorkingKeysWhenANewRecordDoesNotOpen(t *testing.T) {
	s := newMemStore()
	master, other := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	k := mustOpen(t, master, s)
	c := mustSeal(t, k, "x", "a:1")
	foreign, err := seal.WrapRecord(other, "dek", 2, bytes.Repeat([]byte{7}, 32), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.put(foreign)
	if err := k.Reload(ctx); !errors.Is(err, seal.ErrWrongMasterKey) {
		t.Fatalf("Reload with a foreign record: %v", err)
	}
	if got, err := k.Open(c, []byte("a:1")); err != nil || string(got) != "x" {
		t.Fatalf("keyring broken by a failed reload: %v", err)
	}
	if k.DataKeyID() != "dek.1" {
		t.Fatalf("seals with %q, a key it could not open", k.DataKeyID())
	}
	// A fresh start refuses: the store is not fully readable with this key.
	if _, err := seal.Open(ctx, master, s); !errors.Is(err, seal.ErrWrongMasterKey) || !strings.Contains(err.Error(), "dek.2") {
		t.Fatalf("Open with one foreign record: %v", err)
	}
}

func TestUnknownPurposeIsKeptNotUsed(t *testing.T) {
	s := newMemStore()
	master := seal.GenerateMasterKey()
	r, err := seal.WrapRecord(master, "hmac:later", 1, bytes.Repeat([]byte{1}, 48), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.put(r)
	k := mustOpen(t, master, s)
	for _, ki := range k.Keys() {
		if ki.Purpose == "hmac:later" {
			t.Fatal("a purpose this version does not know is in use")
		}
	}
	newKey := seal.GenerateMasterKey()
	if n, err := seal.RotateMaster(ctx, s, master, newKey); err != nil || n != 2 {
		t.Fatalf("RotateMaster = %d, %v; want the unknown-purpose key re-wrapped too", n, err)
	}
	mustOpen(t, newKey, s)
}

func TestClose(t *testing.T) {
	k, err := seal.Open(ctx, seal.GenerateMasterKey(), newMemStore())
	if err != nil {
		t.Fatal(err)
	}
	c := mustSeal(t, k, "x", "a:1")
	_, priv, err := k.Signer(ctx, "token")
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	if !bytes.Equal(priv, make([]byte, len(priv))) {
		t.Fatal("Close left the private key in memory")
	}
	if _, err := k.Seal([]byte("x"), []byte("a:1")); !errors.Is(err, seal.ErrClosed) {
		t.Fatalf("Seal after Close: %v", err)
	}
	if _, err := k.Open(c, []byte("a:1")); !errors.Is(err, seal.ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, _, err := k.Signer(ctx, "token"); !errors.Is(err, seal.ErrClosed) {
		t.Fatalf("Signer after Close: %v", err)
	}
	if err := k.Reload(ctx); !errors.Is(err, seal.ErrClosed) {
		t.Fatalf("Reload after Close: %v", err)
	}
	if _, ok := k.PublicKey("sign:token.1"); ok {
		t.Fatal("PublicKey after Close")
	}
}
