package seal

import (
	"context"
	"errors"

	"warden"
)

// rotateRounds bounds RotateMaster's list/replace rounds when records keep
// appearing under the old key (replicas still running with it).
const rotateRounds = 5

// RotateMaster re-wraps every key in store from oldKey to newKey (master keys),
// atomically (one ReplaceWrapped): afterwards the server starts with the new
// master key and the old one opens nothing. Sealed data is not touched: the
// data keys stay the same, only their wrapping changes.
//
// It is idempotent: records already under newKey are checked and left
// alone, so running it again after a success, or after replicas still on
// the old key added records, completes the rotation. It returns how many
// records it re-wrapped. It fails, changing nothing, if a record is wrapped
// by neither key (ErrWrongMasterKey) or does not authenticate (ErrDamaged).
// Records a replica inserts under the old key while it runs are picked up by
// another round; if the store keeps changing, it fails with
// warden.CodeConflict and asks to be run again.
func RotateMaster(ctx context.Context, store KeyStore, oldKey, newKey []byte) (int, error) {
	if store == nil {
		return 0, fail(warden.CodeInternal, nil, "seal.RotateMaster: no key store")
	}
	om, err := newMaster(oldKey, "old master key")
	if err != nil {
		return 0, err
	}
	nm, err := newMaster(newKey, "new master key")
	if err != nil {
		return 0, err
	}
	if om.id == nm.id {
		return 0, fieldErr("new master key", "is the same as the old master key")
	}
	total := 0
	for range rotateRounds {
		recs, err := store.ListKeys(ctx)
		if err != nil {
			return total, fail(warden.CodeUnavailable, err, "cannot read the keyring from the store")
		}
		var items []Rewrap
		for _, r := range recs {
			item, err := rewrapRecord(r, om, nm)
			if err != nil {
				return total, err
			}
			if item != nil {
				items = append(items, *item)
			}
		}
		if len(items) == 0 {
			return total, nil
		}
		err = store.ReplaceWrapped(ctx, items)
		if err == nil {
			total += len(items)
			continue // list again: a replica on the old key may have inserted meanwhile
		}
		if !warden.IsCode(err, warden.CodeConflict) {
			return total, fail(warden.CodeUnavailable, err, "cannot store the re-wrapped keys; nothing was changed")
		}
		// A record changed under us; nothing was written. Start over.
	}
	return total, fail(warden.CodeConflict, nil, "the key store kept changing during the rotation; run it again")
}

// rewrapRecord returns the rewrap that moves r from om to nm, nil if r is
// already under nm (after checking it opens), or an error.
func rewrapRecord(r KeyRecord, om, nm *master) (*Rewrap, error) {
	m := pick([]*master{nm, om}, r.Wrapped)
	if m == nil {
		if _, ok := wrappedMasterID(r.Wrapped); !ok {
			return nil, fail(warden.CodeInternal, ErrDamaged, "key %q in the key store is damaged; nothing was changed", r.ID)
		}
		return nil, fail(warden.CodeInvalid, ErrWrongMasterKey,
			"key %q is wrapped by neither the old nor the new master key (wrong old key?); nothing was changed", r.ID)
	}
	material, err := m.unwrap(r.ID, r.Purpose, r.Wrapped)
	if err != nil {
		if errors.Is(err, errForeignMaster) { // unreachable: pick matched the id
			return nil, fail(warden.CodeInvalid, ErrWrongMasterKey, "key %q: wrong master key", r.ID)
		}
		return nil, fail(warden.CodeInternal, ErrDamaged,
			"key %q in the key store is damaged or was tampered with; nothing was changed", r.ID)
	}
	defer clear(material)
	if m == nm {
		return nil, nil
	}
	wrapped, err := nm.wrap(r.ID, r.Purpose, material)
	if err != nil {
		return nil, err
	}
	return &Rewrap{ID: r.ID, Old: r.Wrapped, New: wrapped}, nil
}
