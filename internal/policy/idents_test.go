package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestIdentIndexMatchesMap applies random insertions, replacements and
// deletions (in place, by copy and by growing) to the identity index and to a
// Go map, and checks after each batch that both hold exactly the same keys.
// Small tables and many keys make probe chains wrap around the table's end,
// which backward-shift deletion must handle.
func TestIdentIndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	buckets := []*bucket{{}, {}, {}}
	want := map[string]*bucket{}
	idx := newIdentIndex(map[string]*bucket{})
	for round := 0; round < 3000; round++ {
		changes := map[string]*bucket{}
		for i := 0; i < 1+rng.IntN(6); i++ {
			key := fmt.Sprintf("agent-%d", rng.IntN(40))
			var b *bucket
			if rng.IntN(3) > 0 {
				b = buckets[rng.IntN(len(buckets))]
			}
			changes[key] = b
		}
		if rng.IntN(10) == 0 {
			// A full build of the current contents, as Replace does.
			for k, b := range changes {
				if b == nil {
					delete(want, k)
				} else {
					want[k] = b
				}
			}
			idx = newIdentIndex(want)
		} else {
			prev, prevWant := idx, maps.Clone(want)
			idx = idx.with(changes)
			for k, b := range changes {
				if b == nil {
					delete(want, k)
				} else {
					want[k] = b
				}
			}
			// The index before the change is still in use by decisions
			// on the previous snapshot: with must not have changed it.
			for k := 0; k < 40; k++ {
				key := fmt.Sprintf("agent-%d", k)
				var got *bucket
				if sl := prev.get(key); sl != nil {
					got = sl.b
				}
				if got != prevWant[key] {
					t.Fatalf("round %d: with changed the previous index: %q is %p, was %p", round, key, got, prevWant[key])
				}
			}
		}
		if idx.n != len(want) {
			t.Fatalf("round %d: %d keys, want %d", round, idx.n, len(want))
		}
		for i := 0; i < 40; i++ {
			key := fmt.Sprintf("agent-%d", i)
			var got *bucket
			if sl := idx.get(key); sl != nil {
				got = sl.b
				if sl.key != key || len(sl.cells) != len(got.cells) {
					t.Fatalf("round %d: slot of %q holds key %q", round, key, sl.key)
				}
			}
			if got != want[key] {
				t.Fatalf("round %d: bucket of %q is %p, want %p", round, key, got, want[key])
			}
		}
	}
}

// TestIdentIndexWrapAround puts and deletes keys whose hashes crowd the end
// of a 16-slot table, so probe chains wrap around it, and checks every key
// is still found where a Go map would have it.
func TestIdentIndexWrapAround(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	b := &bucket{}
	for round := 0; round < 2000; round++ {
		idx := identTable{slots: make([]identSlot, 16)}
		hashes := map[string]uint64{}
		for i := 0; i < 40; i++ {
			key := fmt.Sprintf("k%d", rng.IntN(12))
			h, ok := hashes[key]
			if !ok {
				h = uint64(12 + rng.IntN(8)) // homes 12-15 and 0-3
				hashes[key] = h
			}
			switch found := idx.find(key, h) != nil; {
			case found && rng.IntN(2) == 0:
				idx.put(key, h, nil)
				delete(hashes, key)
			case found || idx.n < 8:
				idx.put(key, h, b)
			default: // the table is as full as the index lets it be
				delete(hashes, key)
			}
			for k := 0; k < 12; k++ {
				key := fmt.Sprintf("k%d", k)
				h, in := hashes[key]
				if found := in && idx.find(key, h) != nil; found != in {
					t.Fatalf("round %d step %d: %q found %v, want %v", round, i, key, found, in)
				}
			}
		}
	}
}
