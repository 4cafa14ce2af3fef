package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"warden"
)

// missReloadInterval bounds how often a lookup miss (Open or PublicKey
// meeting an unknown key id) reloads the store: ids come from data, and a
// flood of unknown ids must not become a flood of queries.
const missReloadInterval = time.Second

// missReloadTimeout bounds a reload triggered by a miss, which has no
// caller context.
const missReloadTimeout = 5 * time.Second

// createAttempts bounds the insert/reload rounds when replicas race to
// create keys.
const createAttempts = 3

// key is one unwrapped key. Only the Keyring holds it; nothing prints it.
type key struct {
	id      string
	purpose string
	gen     uint64
	created time.Time

	// data keys
	aead   cipher.AEAD
	header []byte // format byte, id length, id: the fixed start of every ciphertext

	// signing keys
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// Keyring holds the unwrapped keys of a key store. It is safe for concurrent
// use. Several Keyrings (replicas) may share one store: keys one creates
// reach the others through Reload, or on their own when a ciphertext or a
// token names a key they do not hold yet.
//
// A Keyring has no printable form: String, GoString, Format, LogValue and
// MarshalJSON show only the number of keys.
type Keyring struct {
	store   KeyStore
	masters []*master // masters[0] wraps new keys; the others (previous keys during a rotation) only unwrap
	now     func() time.Time

	mu     sync.RWMutex
	keys   map[string]*key // by id
	active map[string]*key // by purpose: the highest generation held
	closed bool

	createMu sync.Mutex // one key creation at a time per process

	missMu   sync.Mutex
	lastMiss time.Time
}

// Open loads and unwraps every key in store with masterKey, the current master
// key. previous may hold the former master key while a master-key rotation is
// rolled out (see docs/seal.md): records still wrapped by it open too; new
// keys are always wrapped by masterKey. When the store holds no data key, Open
// creates the first one.
//
// Open fails closed: if any record does not open, it returns an error and no
// keyring. A master key that opens no record, or records wrapped by a key
// that was not given, fail with code warden.CodeInvalid and ErrWrongMasterKey
// ("the master key does not open this data (wrong WARDEN_MASTER_KEY?)");
// a record that names the given master but does not authenticate fails with
// warden.CodeInternal and ErrDamaged; an unreachable store with
// warden.CodeUnavailable.
func Open(ctx context.Context, masterKey []byte, store KeyStore, previous ...[]byte) (*Keyring, error) {
	if store == nil {
		return nil, fail(warden.CodeInternal, nil, "seal.Open: no key store")
	}
	m, err := newMaster(masterKey, "WARDEN_MASTER_KEY")
	if err != nil {
		return nil, err
	}
	masters := []*master{m}
	for i, p := range previous {
		pm, err := newMaster(p, fmt.Sprintf("previous master key %d", i+1))
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(masters, func(x *master) bool { return x.id == pm.id }) {
			masters = append(masters, pm)
		}
	}
	k := &Keyring{
		store:   store,
		masters: masters,
		now:     time.Now,
		keys:    map[string]*key{},
		active:  map[string]*key{},
	}
	if err := k.load(ctx, true); err != nil {
		k.Close()
		return nil, err
	}
	if k.activeKey(PurposeDEK) == nil {
		if _, err := k.next(ctx, PurposeDEK, 0); err != nil {
			k.Close()
			return nil, err
		}
	}
	return k, nil
}

// Reload reads the store and adds the keys this keyring does not hold yet
// (keys created by other replicas). Keys already held are kept as they are:
// a key's material never changes, only its wrapping. If some new records do
// not open, Reload still adds the others and returns an error naming the
// first that failed; the keyring stays usable with the keys it holds.
func (k *Keyring) Reload(ctx context.Context) error { return k.load(ctx, false) }

// load reads the store and unwraps the records not held yet. strict (Open)
// turns any record that does not open into an error.
func (k *Keyring) load(ctx context.Context, strict bool) error {
	recs, err := k.store.ListKeys(ctx)
	if err != nil {
		return fail(warden.CodeUnavailable, err, "cannot read the keyring from the store")
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })

	k.mu.RLock()
	closed := k.closed
	var fresh []KeyRecord
	for _, r := range recs {
		if _, ok := k.keys[r.ID]; !ok {
			fresh = append(fresh, r)
		}
	}
	k.mu.RUnlock()
	if closed {
		return fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
	}

	var (
		loaded           []*key
		foreign, damaged []string
		opened           int
	)
	for _, r := range fresh {
		kk, err := k.unwrapRecord(r)
		switch {
		case errors.Is(err, errForeignMaster):
			foreign = append(foreign, r.ID)
		case err != nil:
			damaged = append(damaged, r.ID)
		case kk == nil: // a purpose of a later version: authentic, kept in the store, unused here
			opened++
		default:
			loaded = append(loaded, kk)
			opened++
		}
	}

	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		for _, kk := range loaded {
			kk.erase()
		}
		return fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
	}
	for _, kk := range loaded {
		if _, ok := k.keys[kk.id]; ok { // a concurrent load got there first
			kk.erase()
			continue
		}
		k.keys[kk.id] = kk
		if a := k.active[kk.purpose]; a == nil || kk.gen > a.gen {
			k.active[kk.purpose] = kk
		}
	}
	held := len(k.keys)
	k.mu.Unlock()

	switch {
	case len(damaged) > 0:
		return fail(warden.CodeInternal, ErrDamaged,
			"key %q in the key store is damaged or was tampered with: it does not authenticate under the master key it names", damaged[0])
	case len(foreign) > 0 && opened == 0 && (strict || held == 0):
		return fail(warden.CodeInvalid, ErrWrongMasterKey, "the master key does not open this data (wrong WARDEN_MASTER_KEY?)")
	case len(foreign) > 0:
		return fail(warden.CodeInvalid, ErrWrongMasterKey,
			"key %q is wrapped by a master key this server was not given: finish the master key rotation (warden keyring rotate) or also give the previous master key", foreign[0])
	}
	return nil
}

// unwrapRecord turns a record into a key. It returns (nil, nil) for an
// authentic record of a purpose this version does not use.
func (k *Keyring) unwrapRecord(r KeyRecord) (*key, error) {
	purpose, gen, ok := parseKeyID(r.ID)
	if !ok || purpose != r.Purpose {
		return nil, errBadWrap
	}
	m := pick(k.masters, r.Wrapped)
	if m == nil {
		if _, ok := wrappedMasterID(r.Wrapped); !ok {
			return nil, errBadWrap
		}
		return nil, errForeignMaster
	}
	material, err := m.unwrap(r.ID, r.Purpose, r.Wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(material)
	if purpose != PurposeDEK && !strings.HasPrefix(purpose, SignPurposePrefix) {
		return nil, nil
	}
	if len(material) != keySize {
		return nil, errBadWrap
	}
	return newKey(r.ID, purpose, gen, r.CreatedAt, material)
}

// newKey builds a usable key from its material; the caller clears material.
func newKey(id, purpose string, gen uint64, created time.Time, material []byte) (*key, error) {
	kk := &key{id: id, purpose: purpose, gen: gen, created: created}
	switch {
	case purpose == PurposeDEK:
		block, err := aes.NewCipher(material)
		if err != nil {
			return nil, err
		}
		if kk.aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
		kk.header = make([]byte, 0, 2+len(id))
		kk.header = append(kk.header, formatV1, byte(len(id)))
		kk.header = append(kk.header, id...)
	case strings.HasPrefix(purpose, SignPurposePrefix):
		kk.priv = ed25519.NewKeyFromSeed(material)
		kk.pub = kk.priv.Public().(ed25519.PublicKey)
	default:
		return nil, errBadWrap
	}
	return kk, nil
}

// erase zeroes what Go lets us zero: the Ed25519 private key. The AES key
// schedule inside crypto/aes is not reachable; it goes with the garbage
// collector.
func (kk *key) erase() {
	clear(kk.priv)
}

func (k *Keyring) activeKey(purpose string) *key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active[purpose]
}

// lookup returns the held key with this id.
func (k *Keyring) lookup(id []byte) (*key, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
	}
	return k.keys[string(id)], nil
}

// lookupOrReload looks id up, and on a miss reloads the store (at most once
// per missReloadInterval per keyring) and looks again.
func (k *Keyring) lookupOrReload(id []byte) (*key, error) {
	kk, err := k.lookup(id)
	if kk != nil || err != nil {
		return kk, err
	}
	if _, _, ok := parseKeyID(string(id)); !ok { // no store holds such an id
		return nil, nil
	}
	k.missMu.Lock()
	if now := k.now(); k.lastMiss.IsZero() || now.Sub(k.lastMiss) >= missReloadInterval || now.Before(k.lastMiss) {
		k.lastMiss = now
		ctx, cancel := context.WithTimeout(context.Background(), missReloadTimeout)
		// Errors leave the key unknown, which the caller reports; records
		// that opened are added even when others did not.
		_ = k.load(ctx, false)
		cancel()
	}
	k.missMu.Unlock()
	return k.lookup(id)
}

// next makes generation seen+1 of purpose the active key, unless this
// keyring already holds a generation above seen (created meanwhile by another
// goroutine, or by another replica and found on conflict), which it returns
// instead. Racing replicas insert the same id; the store lets one win and the
// others load the winner.
func (k *Keyring) next(ctx context.Context, purpose string, seen uint64) (*key, error) {
	k.createMu.Lock()
	defer k.createMu.Unlock()
	for range createAttempts {
		a := k.activeKey(purpose)
		if a != nil && a.gen > seen {
			return a, nil
		}
		gen := seen + 1
		if a != nil && a.gen >= gen {
			gen = a.gen + 1
		}
		id := keyID(purpose, gen)
		kk, rec, err := k.create(id, purpose, gen)
		if err != nil {
			return nil, err
		}
		err = k.store.InsertKey(ctx, rec)
		if err == nil {
			k.mu.Lock()
			if k.closed {
				k.mu.Unlock()
				kk.erase()
				return nil, fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
			}
			k.keys[id] = kk
			if a := k.active[purpose]; a == nil || kk.gen > a.gen {
				k.active[purpose] = kk
			}
			k.mu.Unlock()
			return kk, nil
		}
		kk.erase()
		if !warden.IsCode(err, warden.CodeConflict) {
			return nil, fail(warden.CodeUnavailable, err, "cannot store new key %q", id)
		}
		// Another replica created this generation: load it (and anything
		// newer) and decide again.
		if err := k.load(ctx, false); err != nil {
			if kk, _ := k.lookup([]byte(id)); kk == nil {
				return nil, err
			}
		}
	}
	return nil, fail(warden.CodeConflict, nil, "could not create a %s key: other replicas kept creating keys concurrently; try again", purpose)
}

// create makes fresh key material and its wrapped record.
func (k *Keyring) create(id, purpose string, gen uint64) (*key, KeyRecord, error) {
	material := make([]byte, keySize)
	defer clear(material)
	if _, err := rand.Read(material); err != nil {
		return nil, KeyRecord{}, fail(warden.CodeInternal, err, "cannot read random bytes")
	}
	wrapped, err := k.masters[0].wrap(id, purpose, material)
	if err != nil {
		return nil, KeyRecord{}, err
	}
	created := k.now().UTC().Truncate(time.Microsecond)
	kk, err := newKey(id, purpose, gen, created, material)
	if err != nil {
		return nil, KeyRecord{}, fail(warden.CodeInternal, err, "cannot build key %q", id)
	}
	return kk, KeyRecord{ID: id, Purpose: purpose, Wrapped: wrapped, CreatedAt: created}, nil
}

// RotateDataKey makes a new data key the active one: Seal uses it from now
// on, and the older data keys stay to open what they sealed. It first reloads
// the store, so the new key follows the newest any replica made; if another
// replica rotates at the same moment, its key is kept and returned instead.
// It returns the id of the active data key.
func (k *Keyring) RotateDataKey(ctx context.Context) (string, error) {
	return k.rotate(ctx, PurposeDEK)
}

// RotateSigner makes a new signing key the active one for name: Signer
// returns it from now on, and PublicKey still verifies with the older ones.
// Same reload and race rules as RotateDataKey. It returns the new key id.
func (k *Keyring) RotateSigner(ctx context.Context, name string) (string, error) {
	purpose, err := SignPurpose(name)
	if err != nil {
		return "", err
	}
	return k.rotate(ctx, purpose)
}

func (k *Keyring) rotate(ctx context.Context, purpose string) (string, error) {
	if err := k.Reload(ctx); err != nil {
		return "", err
	}
	var seen uint64
	if a := k.activeKey(purpose); a != nil {
		seen = a.gen
	}
	kk, err := k.next(ctx, purpose, seen)
	if err != nil {
		return "", err
	}
	return kk.id, nil
}

// Signer returns the active signing key called name ("token", "audit"),
// creating and storing it on first use. Concurrent calls, in this process or
// on replicas sharing the store, end up with one key. The returned private
// key belongs to the keyring: callers must not modify or retain it, and Close
// erases it. kid is the key id to put in tokens (e.g. a JWT "kid").
func (k *Keyring) Signer(ctx context.Context, name string) (kid string, priv ed25519.PrivateKey, err error) {
	purpose, err := SignPurpose(name)
	if err != nil {
		return "", nil, err
	}
	k.mu.RLock()
	closed, a := k.closed, k.active[purpose]
	k.mu.RUnlock()
	if closed {
		return "", nil, fail(warden.CodeUnavailable, ErrClosed, "the keyring is closed")
	}
	if a == nil {
		if a, err = k.next(ctx, purpose, 0); err != nil {
			return "", nil, err
		}
	}
	return a.id, a.priv, nil
}

// PublicKey returns the public key of the signing key kid, for verification.
// A kid this keyring does not hold triggers a reload of the store (at most
// once a second), so keys made by other replicas verify too. It reports false
// for an unknown kid and for the id of a key that is not a signing key.
func (k *Keyring) PublicKey(kid string) (ed25519.PublicKey, bool) {
	if len(kid) > 255 || !validIDBytes([]byte(kid)) {
		return nil, false
	}
	kk, err := k.lookupOrReload([]byte(kid))
	if err != nil || kk == nil || kk.pub == nil {
		return nil, false
	}
	return slices.Clone(kk.pub), true
}

// Keys lists the keys this keyring holds, without material, sorted by
// purpose and generation.
func (k *Keyring) Keys() []KeyInfo {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]KeyInfo, 0, len(k.keys))
	for _, kk := range k.keys {
		out = append(out, KeyInfo{ID: kk.id, Purpose: kk.purpose, Generation: kk.gen, CreatedAt: kk.created, Active: k.active[kk.purpose] == kk})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Purpose != out[j].Purpose {
			return out[i].Purpose < out[j].Purpose
		}
		return out[i].Generation < out[j].Generation
	})
	return out
}

// DataKeyID returns the id of the active data key, the one Seal uses.
func (k *Keyring) DataKeyID() string {
	if a := k.activeKey(PurposeDEK); a != nil {
		return a.id
	}
	return ""
}

// Close erases the keyring's keys (as far as Go allows: see docs/seal.md)
// and makes every later call fail with ErrClosed. Call it at shutdown, once
// nothing uses the keyring or a private key Signer returned.
func (k *Keyring) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, kk := range k.keys {
		kk.erase()
	}
	k.keys, k.active, k.closed = map[string]*key{}, map[string]*key{}, true
}

func (k *Keyring) redacted() string {
	if k == nil {
		return "seal.Keyring(nil)"
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return fmt.Sprintf("seal.Keyring{keys: %d, material: [redacted]}", len(k.keys))
}

// String shows the number of keys, never their material.
func (k *Keyring) String() string { return k.redacted() }

// GoString is String.
func (k *Keyring) GoString() string { return k.redacted() }

// Format prints String for every verb.
func (k *Keyring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.redacted())) }

// LogValue logs the number of keys only.
func (k *Keyring) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("seal.Keyring(nil)")
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slog.GroupValue(slog.Int("keys", len(k.keys)))
}

// MarshalJSON emits a placeholder: a keyring has no serialised form.
func (k *Keyring) MarshalJSON() ([]byte, error) { return []byte(`"[redacted keyring]"`), nil }
