package seal

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// KeyRecord is one stored key: its material wrapped (encrypted) by the master
// key. Wrapped is ciphertext, but the String, Format, LogValue and JSON forms
// still omit it and show only its length.
type KeyRecord struct {
	// ID is "<purpose>.<generation>", e.g. "dek.2" or "sign:token.1". It is
	// the primary key: unique across the store, never reused or changed.
	ID string
	// Purpose is PurposeDEK or "sign:<name>" (other values may come from
	// later versions). Never changed after insert.
	Purpose string
	// Wrapped is the key material sealed under the master key, bound to ID
	// and Purpose. Opaque to the store; at most 255 bytes. Only
	// ReplaceWrapped changes it.
	Wrapped []byte
	// CreatedAt is when the key was made (UTC). The store may round it to
	// microseconds; it is informational (rotation policies read it) and is
	// not authenticated.
	CreatedAt time.Time
}

// String omits the wrapped bytes.
func (r KeyRecord) String() string {
	return fmt.Sprintf("seal.KeyRecord{ID:%q Purpose:%q CreatedAt:%s Wrapped:[%d bytes]}",
		r.ID, r.Purpose, r.CreatedAt.UTC().Format(time.RFC3339), len(r.Wrapped))
}

// GoString is String: %#v must not dump the bytes either.
func (r KeyRecord) GoString() string { return r.String() }

// Format prints String for every verb, %x and %#v included.
func (r KeyRecord) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// LogValue logs the record's metadata only.
func (r KeyRecord) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", r.ID),
		slog.String("purpose", r.Purpose),
		slog.Time("created_at", r.CreatedAt),
		slog.Int("wrapped_len", len(r.Wrapped)),
	)
}

// MarshalJSON emits the metadata only. A store must persist the fields
// itself, never through this form.
func (r KeyRecord) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID         string    `json:"id"`
		Purpose    string    `json:"purpose"`
		CreatedAt  time.Time `json:"created_at"`
		WrappedLen int       `json:"wrapped_len"`
	}{r.ID, r.Purpose, r.CreatedAt, len(r.Wrapped)})
}

// Rewrap replaces the wrapped form of one key: ReplaceWrapped sets Wrapped to
// New only where it still equals Old (compare and swap).
type Rewrap struct {
	ID  string
	Old []byte
	New []byte
}

// String omits the wrapped bytes.
func (r Rewrap) String() string {
	return fmt.Sprintf("seal.Rewrap{ID:%q Old:[%d bytes] New:[%d bytes]}", r.ID, len(r.Old), len(r.New))
}

// GoString is String.
func (r Rewrap) GoString() string { return r.String() }

// Format prints String for every verb.
func (r Rewrap) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// LogValue logs the id and the lengths only.
func (r Rewrap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.Int("old_len", len(r.Old)), slog.Int("new_len", len(r.New)))
}

// MarshalJSON emits the id and the lengths only.
func (r Rewrap) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string `json:"id"`
		OldLen int    `json:"old_len"`
		NewLen int    `json:"new_len"`
	}{r.ID, len(r.Old), len(r.New)})
}

// KeyStore persists key records. The store layer implements it on SQLite and
// PostgreSQL (one table: id TEXT PRIMARY KEY, purpose TEXT NOT NULL, wrapped
// BLOB/BYTEA NOT NULL, created_at TIMESTAMP NOT NULL). It holds no business
// rules: seal decides ids, generations and which key is active. The
// conformance suite in internal/seal/sealtest checks an implementation
// against this contract.
//
// Errors: a failure to reach the database is returned as is (seal wraps it
// as unavailable); the conflicts below are *warden.Error with code
// warden.CodeConflict, matched with warden.IsCode.
type KeyStore interface {
	// ListKeys returns every record, in any order, with every field as it
	// was inserted (Wrapped as last replaced; CreatedAt possibly rounded to
	// microseconds). The returned slices must not alias the store's memory.
	// An empty store returns no records and no error.
	ListKeys(ctx context.Context) ([]KeyRecord, error)

	// InsertKey adds one record. If a record with the same ID exists, it
	// fails with warden.CodeConflict and changes nothing (in SQL: the
	// primary key violation, mapped to the conflict code). Seal relies on
	// this to let exactly one of several racing replicas create a key.
	InsertKey(ctx context.Context, rec KeyRecord) error

	// ReplaceWrapped applies every rewrap atomically, all or none (one
	// transaction): for each item, the record with that ID must exist and
	// currently hold exactly Old; its Wrapped becomes New and no other field
	// changes. If any item's record is missing or holds something other than
	// Old, it fails with warden.CodeConflict and changes nothing. An empty
	// slice succeeds and changes nothing. In SQL: UPDATE ... SET wrapped=New
	// WHERE id=ID AND wrapped=Old, each affecting exactly one row, else
	// roll back.
	ReplaceWrapped(ctx context.Context, items []Rewrap) error
}
