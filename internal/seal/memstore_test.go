package seal_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"

	"warden"
	"warden/internal/seal"
	"warden/internal/seal/sealtest"
)

// memStore is a KeyStore in memory that honours the documented contract,
// with hooks to inject faults and interleavings. The conformance suite below
// keeps it honest.
type memStore struct {
	mu   sync.Mutex
	recs map[string]seal.KeyRecord

	lists int // ListKeys calls

	listErr      error
	beforeInsert func(rec seal.KeyRecord) // runs without the lock held
	beforeRepl   func(items []seal.Rewrap) error
}

func newMemStore() *memStore { return &memStore{recs: map[string]seal.KeyRecord{}} }

func cloneRec(r seal.KeyRecord) seal.KeyRecord {
	r.Wrapped = slices.Clone(r.Wrapped)
	return r
}

func (s *memStore) ListKeys(ctx context.Context) ([]seal.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	if s.listErr != nil {
		return nil, s.listErr
	}
	out := make([]seal.KeyRecord, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, cloneRec(r))
	}
	return out, nil
}

func (s *memStore) InsertKey(ctx context.Context, rec seal.KeyRecord) error {
	if h := s.beforeInsert; h != nil {
		h(rec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[rec.ID]; ok {
		return warden.Errorf(warden.CodeConflict, "key %q exists", rec.ID)
	}
	s.recs[rec.ID] = cloneRec(rec)
	return nil
}

func (s *memStore) ReplaceWrapped(ctx context.Context, items []seal.Rewrap) error {
	if h := s.beforeRepl; h != nil {
		if err := h(items); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		r, ok := s.recs[it.ID]
		if !ok || !bytes.Equal(r.Wrapped, it.Old) {
			return warden.Errorf(warden.CodeConflict, "key %q changed", it.ID)
		}
	}
	for _, it := range items {
		r := s.recs[it.ID]
		r.Wrapped = slices.Clone(it.New)
		s.recs[it.ID] = r
	}
	return nil
}

// snapshot copies the records, for "nothing changed" assertions.
func (s *memStore) snapshot() map[string]seal.KeyRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]seal.KeyRecord{}
	for id, r := range s.recs {
		m[id] = cloneRec(r)
	}
	return m
}

func (s *memStore) put(r seal.KeyRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[r.ID] = cloneRec(r)
}

func (s *memStore) listCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func sameRecords(t *testing.T, got, want map[string]seal.KeyRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("store holds %d records, want %d", len(got), len(want))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok || g.Purpose != w.Purpose || !bytes.Equal(g.Wrapped, w.Wrapped) || !g.CreatedAt.Equal(w.CreatedAt) {
			t.Fatalf("record %s changed", id)
		}
	}
}

func TestMemStoreConformance(t *testing.T) {
	sealtest.KeyStore(t, func(t *testing.T) seal.KeyStore { return newMemStore() })
}
