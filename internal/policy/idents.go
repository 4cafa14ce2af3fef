package policy

import (
	"hash/maphash"
	"strings"
)

// identIndex finds the bucket of an identity name or id. Its tables are
// open-addressed (linear probing, at most half full) and their slots hold
// what a lookup reads: the key's hash, the key and the bucket's cells. With
// many identities named by policies, a decision's slot is rarely in the CPU
// cache; a Go map would read a control word, then a slot, then the key's
// bytes and then the bucket, one dependent miss after another, where this
// reads one slot (one cache line) and then the key's bytes and the cells in
// parallel.
//
// Keys are spread over identShards tables by the top bits of their hash, so
// that Put copies the few tables it changes (tens of kilobytes with 20,000
// identities) rather than the whole index; the array of table pointers is
// read by every decision and stays in cache. An index is immutable once
// published in a snapshot; with copies what it changes.
type identIndex struct {
	shards [identShards]*identTable
	n      int
}

const identShards = 256

func shardOf(h uint64) int { return int(h >> 56) }

// identTable is one open-addressed table of an identIndex.
type identTable struct {
	slots []identSlot // a power of two long
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

// get returns the slot of key, or nil.
func (x *identIndex) get(key string) *identSlot {
	if x.n == 0 {
		return nil
	}
	h := hashKey(key)
	t := x.shards[shardOf(h)]
	if t == nil {
		return nil
	}
	return t.find(key, h)
}

func (t *identTable) find(key string, h uint64) *identSlot {
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
	var keys [identShards][]string
	for key := range m {
		s := shardOf(hashKey(key))
		keys[s] = append(keys[s], key)
	}
	var arena strings.Builder
	for _, ks := range keys {
		for _, key := range ks {
			arena.WriteString(key)
		}
	}
	text, off := arena.String(), 0
	x := identIndex{n: len(m)}
	for s := range keys {
		if len(keys[s]) == 0 {
			continue
		}
		t := &identTable{slots: make([]identSlot, slotsFor(len(keys[s])))}
		for _, key := range keys[s] {
			t.put(text[off:off+len(key)], hashKey(key), m[key])
			off += len(key)
		}
		x.shards[s] = t
	}
	return x
}

func slotsFor(n int) int {
	size := 8
	for size < 2*n {
		size *= 2
	}
	return size
}

// put sets the bucket of key in place (b nil deletes it). The table must
// have room.
func (t *identTable) put(key string, h uint64, b *bucket) {
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
func (t *identTable) delete(i uint64) {
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

// with returns a copy of t with room for grow more keys.
func (t *identTable) with(grow int) *identTable {
	if t == nil {
		return &identTable{slots: make([]identSlot, slotsFor(grow))}
	}
	if 2*(t.n+grow) <= len(t.slots) {
		nt := &identTable{slots: make([]identSlot, len(t.slots)), n: t.n}
		copy(nt.slots, t.slots)
		return nt
	}
	nt := &identTable{slots: make([]identSlot, slotsFor(t.n+grow))}
	for i := range t.slots {
		if s := &t.slots[i]; s.b != nil {
			nt.put(s.key, s.h, s.b)
		}
	}
	return nt
}

// with returns a copy of x in which each key of changes has its bucket, or
// none for a nil bucket. Tables no key of changes falls in are shared.
func (x *identIndex) with(changes map[string]*bucket) identIndex {
	nx := *x
	var grow [identShards]int
	for key := range changes {
		grow[shardOf(hashKey(key))]++
	}
	for s, g := range grow {
		if g > 0 {
			nx.shards[s] = x.shards[s].with(g)
		}
	}
	for key, b := range changes {
		h := hashKey(key)
		t := nx.shards[shardOf(h)]
		nx.n -= t.n
		t.put(key, h, b)
		nx.n += t.n
	}
	return nx
}
