package audit

import (
	"context"
	"encoding/binary"
	"time"

	"warden"
)

// Store is the data access the audit log needs; internal/store implements
// it for SQLite and PostgreSQL. It holds no rules: hashing, sequencing and
// checking live in this package.
type Store interface {
	// PrepareAudit installs what the log needs at start (the head row, the
	// triggers that refuse UPDATE and DELETE on events). Idempotent.
	PrepareAudit(ctx context.Context) error
	// AppendAudit runs one write transaction: it locks and reads the head,
	// reads up to maxChanges admin changes not yet audited (oldest first),
	// calls build, inserts the events build returns, marks every change
	// passed to build as audited by the event build made for it
	// (ChangeEvent), advances the head to the last event and commits. build
	// may run more than once if the engine retries; it must be pure.
	AppendAudit(ctx context.Context, maxChanges int, build BuildFunc) error
	// ChangesMaybePending reports whether this process recorded admin
	// changes that may not be audited yet. A false answer lets a batch skip
	// the outbox query; changes made elsewhere (other replicas) are adopted
	// by the periodic pump, which always queries.
	ChangesMaybePending() bool
	// AuditHead reads the head row.
	AuditHead(ctx context.Context) (Head, error)
	// ScanAudit calls fn for every event with seq > after, in seq order.
	// The event passed to fn is reused between calls.
	ScanAudit(ctx context.Context, after int64, fn func(*Event) error) error
	// QueryAudit returns the events matching f (see Filter).
	QueryAudit(ctx context.Context, f Filter) ([]Event, error)
	// AuditEventHash returns the stored hash of the event at seq. For an
	// event a retention cut archived (seq at or below an anchor), it is the
	// hash the stored checkpoint at seq records, if there is one: the
	// database's own signed word for the event it no longer holds.
	AuditEventHash(ctx context.Context, seq int64) (Hash, bool, error)
	// InsertCheckpoint stores a checkpoint; one at the same seq already
	// stored is not an error.
	InsertCheckpoint(ctx context.Context, c Checkpoint) error
	// Checkpoints lists stored checkpoints by seq.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// AuditKey returns the sealed key stored under id (CodeNotFound when
	// there is none); InsertAuditKey stores one (CodeConflict when id
	// exists).
	AuditKey(ctx context.Context, id string) ([]byte, error)
	InsertAuditKey(ctx context.Context, id string, sealed []byte, at time.Time) error
	// AuditAnchors lists the retention anchors by seq.
	AuditAnchors(ctx context.Context) ([]Anchor, error)
	// ArchiveAudit runs one retention transaction: it checks that a.FirstSeq
	// follows the newest anchor (or is 1) and that the event at a.Seq has
	// hash a.Hash, inserts the anchor and deletes the events a.FirstSeq to
	// a.Seq, past the append-only guard for this transaction only. It
	// returns the number of events deleted; a cut that no longer fits
	// (another retention run came first) is CodeConflict and changes
	// nothing.
	ArchiveAudit(ctx context.Context, a Anchor) (int64, error)
}

// Anchor records a retention cut: events FirstSeq to Seq were archived to
// File (its SHA-256 FileSHA256) and deleted from the database. Hash is the
// hash of event Seq, and the signed checkpoint at CheckpointSeq (= Seq)
// vouches for it; the chain in the database continues from (Seq, Hash).
type Anchor struct {
	Seq           int64     `json:"seq"`
	FirstSeq      int64     `json:"first_seq"`
	Hash          Hash      `json:"hash"`
	CheckpointSeq int64     `json:"checkpoint_seq"`
	File          string    `json:"file"`
	FileSHA256    Hash      `json:"file_sha256"`
	Time          time.Time `json:"time"`
	Actor         string    `json:"actor"`
	// KeyID and Sig: the anchor is signed with the audit signing key
	// (SignedMessage), so a row written by anyone without the master key,
	// to pass the retention gate and delete events, does not verify.
	KeyID string `json:"key_id"`
	Sig   []byte `json:"sig"`
}

// SignedMessage is what an anchor's signature covers:
// "warden.audit.anchor/v1\n" || seq || first_seq || hash (32 bytes) ||
// checkpoint_seq || file_sha256 (32 bytes) || time (int64 µs), then file,
// actor and key id, each uint32 length || bytes (big-endian integers).
func (a Anchor) SignedMessage() []byte {
	b := make([]byte, 0, 160+len(a.File)+len(a.Actor)+len(a.KeyID))
	b = append(b, "warden.audit.anchor/v1\n"...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(a.FirstSeq))
	b = append(b, a.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.CheckpointSeq))
	b = append(b, a.FileSHA256[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Time.UnixMicro()))
	for _, s := range []string{a.File, a.Actor, a.KeyID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// PendingChange is an admin change from the changes table not yet in the
// chain; Seq is its changes.seq.
type PendingChange struct {
	Seq    int64
	Change warden.Change
}

// Batch is what build returns: the events to insert, in chain order, and for
// each pending change the index in Events of the event that adopts it.
type Batch struct {
	Events      []*Event
	ChangeEvent []int // parallel to the pending changes given to build
}

// BuildFunc makes a batch on top of head from the pending changes.
type BuildFunc func(head Head, changes []PendingChange) (Batch, error)

// Filter selects events for QueryAudit. Empty fields do not filter.
type Filter struct {
	Identity string
	Kind     string
	// Action matches exactly, or as a pattern when it contains '*' (any
	// run of characters, case-sensitive).
	Action   string
	Decision string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	// Text is a case-insensitive substring of reason, action, actor,
	// identity, resource, code, policy, rule, request path or detail.
	Text string
	// Before (newest first) or After (oldest first) bound seq exclusively;
	// Ascending orders oldest first. Limit caps the answer (1..1000).
	Before    int64
	After     int64
	Ascending bool
	Limit     int
}
