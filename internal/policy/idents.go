package policy

import (
	"hash/maphash"
	"strings"
)

// identIndex finds the bucket of an identity name or id. It is open-addressed
// (linear probing, at most half full) and its slots hold what a lookup reads:
// the key's hash, the key and the bucket's cells. With many identities named
// by policies, a decision's slot is rarely in the CPU cache; a Go map would
// read a control word, then a slot, then the key's bytes and then the
// bucket, one dependent miss after another, where this reads one slot (one
// cache line) and then the key's bytes and the cells in parallel.
//
// An index is immutable once published in a snapshot; with copies it.
type identIndex struct {
	slots []identSlot // a power of two long, or nil
	n     int
}

// identSlot is one cache line; b is nil in an empty slot.
type identSlot struct {
	h     uint64
	key   string
	cells []cell // b.cells
	b     *bucket
	_     uint64
}

var keySeed = maphash.MakeSeed()

func hashKey(s string) uint64 { return maphash.String(keySeed, s) }

// get returns the bucket of key, or nil.
func (t *identIndex) get(key string) *identSlot {
	if t.n == 0 {
		return nil
	}
	return t.find(key, hashKey(key))
}

func (t *identIndex) find(key string, h uint64) *identSlot {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.b == nil {
			return nil
		}
		if s.h == h && s.key == key {
			return s
		}
	}
}

// newIdentIndex indexes the buckets of m. The keys are copied into one
// string, so that the keys of different identities lie together in memory
// rather than wherever their policies were parsed.
func newIdentIndex(m map[string]*bucket) identIndex {
	t := identIndex{slots: make([]identSlot, slotsFor(len(m)))}
	keys := make([]string, 0, len(m))
	var arena strings.Builder
	for key := range m {
		keys = append(keys, key)
		arena.WriteString(key)
	}
	text, off := arena.String(), 0
	for _, key := range keys {
		t.put(text[off:off+len(key)], hashKey(key), m[key])
		off += len(key)
	}
	return t
}

func slotsFor(n int) int {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return size
}

// put sets the bucket of key in place (b nil deletes it). The table must
// have room.
func (t *identIndex) put(key string, h uint64, b *bucket) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for ; t.slots[i].b != nil; i = (i + 1) & mask {
		if t.slots[i].h == h && t.slots[i].key == key {
			if b == nil {
				t.delete(i)
			} else {
				t.slots[i].cells, t.slots[i].b = b.cells, b
			}
			return
		}
	}
	if b != nil {
		t.slots[i] = identSlot{h: h, key: key, cells: b.cells, b: b}
		t.n++
	}
}

// delete empties slot i and moves back the slots after it that would no
// longer be found (backward-shift deletion, so lookups need no tombstones).
func (t *identIndex) delete(i uint64) {
	mask := uint64(len(t.slots) - 1)
	t.n--
	for j := i; ; {
		t.slots[i] = identSlot{}
		for {
			j = (j + 1) & mask
			if t.slots[j].b == nil {
				return
			}
			// The slot at j may move to i unless its home lies cyclically
			// in (i, j].
			home := t.slots[j].h & mask
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				break
			}
		}
		t.slots[i] = t.slots[j]
		i = j
	}
}

// with returns a copy of t in which each key of changes has its bucket, or
// none for a nil bucket.
func (t *identIndex) with(changes map[string]*bucket) identIndex {
	grow := t.n + len(changes)
	if 2*grow <= len(t.slots) {
		nt := identIndex{slots: make([]identSlot, len(t.slots)), n: t.n}
		copy(nt.slots, t.slots)
		for key, b := range changes {
			nt.put(key, hashKey(key), b)
		}
		return nt
	}
	nt := identIndex{slots: make([]identSlot, slotsFor(grow))}
	for i := range t.slots {
		if s := &t.slots[i]; s.b != nil {
			nt.put(s.key, s.h, s.b)
		}
	}
	for key, b := range changes {
		nt.put(key, hashKey(key), b)
	}
	return nt
}

// each calls fn for every key and bucket.
func (t *identIndex) each(fn func(key string, b *bucket)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.b != nil {
			fn(s.key, s.b)
		}
	}
}
