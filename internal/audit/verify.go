package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
)

// ProblemKind says what is wrong with the chain. Stable names; the API and
// the CLI show them.
type ProblemKind string

// Problem kinds.
const (
	// ProblemEdited: an event's content does not match its hash.
	ProblemEdited ProblemKind = "edited"
	// ProblemDeleted: sequence numbers are missing.
	ProblemDeleted ProblemKind = "deleted"
	// ProblemInserted: an event that is not part of the chain sits in it.
	ProblemInserted ProblemKind = "inserted"
	// ProblemReordered: events were moved to other sequence numbers.
	ProblemReordered ProblemKind = "reordered"
	// ProblemTruncated: the chain ends before a signed checkpoint (newest
	// events deleted, or the database rolled back to an older copy).
	ProblemTruncated ProblemKind = "truncated"
	// ProblemRewritten: the event at a checkpoint's seq differs from the
	// signed hash (rolled back and written again, or rewritten wholesale).
	ProblemRewritten ProblemKind = "rewritten"
	// ProblemBadSignature: a checkpoint's signature does not verify (forged
	// or altered checkpoint).
	ProblemBadSignature ProblemKind = "bad_signature"
	// ProblemUnknownKey: a checkpoint names a key that is not trusted.
	ProblemUnknownKey ProblemKind = "unknown_key"
	// ProblemHead: the head row disagrees with the last event.
	ProblemHead ProblemKind = "head_mismatch"
	// ProblemVersion: an event uses an encoding version this build does not
	// know.
	ProblemVersion ProblemKind = "unknown_version"
)

// Problem is the first thing wrong, at the first bad sequence number.
type Problem struct {
	Seq     int64       `json:"seq"`
	Kind    ProblemKind `json:"kind"`
	Message string      `json:"message"`
}

func (p *Problem) Error() string { return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Message) }

// Report is the result of Verify.
type Report struct {
	OK          bool  `json:"ok"`
	Events      int64 `json:"events"`
	Head        Head  `json:"head"`
	Checkpoints int   `json:"checkpoints"`
	// CheckpointedSeq is the newest seq covered by a verified signature;
	// events after it are protected by the hash chain only, until the next
	// checkpoint.
	CheckpointedSeq int64    `json:"checkpointed_seq"`
	Problem         *Problem `json:"problem,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
}

// Reader is what Verify reads; Store satisfies it.
type Reader interface {
	ScanAudit(ctx context.Context, after int64, fn func(*Event) error) error
	AuditHead(ctx context.Context) (Head, error)
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
}

// VerifyOptions add outside evidence to Verify.
type VerifyOptions struct {
	// Checkpoints from outside the database (the checkpoint file, an
	// export); checked like the database's own.
	Checkpoints []Checkpoint
	// PublicKey resolves trusted checkpoint keys by id (the keyring's
	// PublicKey, or pinned keys). When nil, a checkpoint is checked with the
	// public key recorded next to it in the file, and database checkpoints
	// with a key some file checkpoint recorded for their id; Report.Warnings
	// then says the keys were not pinned.
	PublicKey func(kid string) (ed25519.PublicKey, bool)
}

// Verify checks the whole chain and every checkpoint: each event's hash
// against its canonical encoding, each link to the previous hash, gapless
// seq from 1, the head row, and each checkpoint's signature and hash against
// the chain. It returns an error only when it cannot read; a broken chain is
// a Report with OK false and the Problem at the first bad seq.
func Verify(ctx context.Context, r Reader, o VerifyOptions) (Report, error) {
	var rep Report
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return rep, unavailable(err, "cannot read audit checkpoints")
	}
	all := append(append([]Checkpoint(nil), cps...), o.Checkpoints...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	rep.Checkpoints = len(all)

	var problems []*Problem
	keyOf := o.PublicKey
	if keyOf == nil {
		recorded := map[string]ed25519.PublicKey{}
		for _, c := range o.Checkpoints {
			if len(c.PublicKey) == ed25519.PublicKeySize {
				if _, ok := recorded[c.KeyID]; !ok {
					recorded[c.KeyID] = c.PublicKey
				}
			}
		}
		keyOf = func(kid string) (ed25519.PublicKey, bool) { k, ok := recorded[kid]; return k, ok }
		if len(all) > 0 {
			rep.Warnings = append(rep.Warnings, "checkpoint keys were not pinned: signatures were checked with the public keys recorded in the checkpoint file; give the master key or --public-key to pin them")
		}
	}
	for _, c := range all {
		if p := checkSignature(c, keyOf); p != nil {
			problems = append(problems, p)
		}
	}

	v := newChainVerifier(all)
	err = r.ScanAudit(ctx, 0, func(e *Event) error {
		if p := v.add(e); p != nil {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return rep, unavailable(err, "cannot read the audit log")
	}
	if p := v.finish(); p != nil {
		problems = append(problems, p)
	}
	rep.Events = v.count
	rep.Head = Head{Seq: v.next - 1, Hash: v.prev}
	rep.CheckpointedSeq = v.checkpointed
	if v.problem == nil {
		head, err := r.AuditHead(ctx)
		if err != nil {
			return rep, unavailable(err, "cannot read the audit head")
		}
		switch {
		case head.Seq > rep.Head.Seq:
			problems = append(problems, &Problem{Seq: rep.Head.Seq + 1, Kind: ProblemTruncated,
				Message: fmt.Sprintf("the head row says the chain ends at seq %d but the last event is seq %d: the newest events were deleted", head.Seq, rep.Head.Seq)})
		case head.Seq < rep.Head.Seq:
			problems = append(problems, &Problem{Seq: head.Seq + 1, Kind: ProblemInserted,
				Message: fmt.Sprintf("events after seq %d were added outside the audit writer (the head row ends there)", head.Seq)})
		case head.Hash != rep.Head.Hash:
			problems = append(problems, &Problem{Seq: head.Seq, Kind: ProblemHead, Message: "the head row's hash differs from the last event's"})
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Seq < problems[j].Seq })
		rep.Problem = problems[0]
		return rep, nil
	}
	rep.OK = true
	return rep, nil
}

var errStop = errors.New("stop")

func checkSignature(c Checkpoint, keyOf func(string) (ed25519.PublicKey, bool)) *Problem {
	pub, ok := keyOf(c.KeyID)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return &Problem{Seq: c.Seq, Kind: ProblemUnknownKey, Message: fmt.Sprintf("the checkpoint at seq %d is signed with key %q, which is not a trusted audit key", c.Seq, c.KeyID)}
	}
	if len(c.PublicKey) > 0 && !c.PublicKey.Equal(pub) {
		return &Problem{Seq: c.Seq, Kind: ProblemBadSignature, Message: fmt.Sprintf("the checkpoint at seq %d records a public key for %q that is not the trusted one", c.Seq, c.KeyID)}
	}
	if len(c.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, c.SignedMessage(), c.Sig) {
		return &Problem{Seq: c.Seq, Kind: ProblemBadSignature, Message: fmt.Sprintf("the signature of the checkpoint at seq %d does not verify: forged or altered", c.Seq)}
	}
	return nil
}

// chainVerifier checks events one at a time, in seq order. It is the core
// of Verify, kept free of I/O so it can be benchmarked and fuzzed.
type chainVerifier struct {
	next         int64 // expected seq
	prev         Hash
	count        int64
	checkpointed int64
	cps          []Checkpoint
	ci           int
	buf          []byte
	recent       [16]Receipt // hashes of the last events, for link diagnosis
	problem      *Problem

	// A hash mismatch where the content fits a later seq is either a
	// reorder (the next event fits this seq) or a deletion with the rest
	// renumbered; the next event decides.
	pending    *Problem
	pendingSeq int64 // the seq the mismatching content was written as
}

func newChainVerifier(cps []Checkpoint) *chainVerifier {
	return &chainVerifier{next: 1, cps: cps}
}

func (v *chainVerifier) fail(p *Problem) *Problem { v.problem = p; return p }

// add checks e and returns the problem that ends verification, if any.
func (v *chainVerifier) add(e *Event) *Problem {
	if v.problem != nil {
		return v.problem
	}
	if v.pending != nil {
		if h, ok := hashAsSeq(&v.buf, e, v.pending.Seq); ok && h == e.Hash {
			v.pending.Kind = ProblemReordered
			v.pending.Message = fmt.Sprintf("the event at seq %d was written as seq %d and the one at seq %d as seq %d: events were reordered", v.pending.Seq, v.pendingSeq, e.Seq, v.pending.Seq)
		}
		return v.fail(v.pending)
	}
	if e.Seq != v.next {
		if e.Seq > v.next {
			return v.fail(&Problem{Seq: v.next, Kind: ProblemDeleted, Message: fmt.Sprintf("events %d to %d are missing", v.next, e.Seq-1)})
		}
		return v.fail(&Problem{Seq: e.Seq, Kind: ProblemInserted, Message: fmt.Sprintf("seq %d appears again", e.Seq)})
	}
	h, buf, known := ComputeHash(v.buf, e)
	v.buf = buf
	if !known {
		return v.fail(&Problem{Seq: e.Seq, Kind: ProblemVersion, Message: fmt.Sprintf("encoding version %d is unknown to this build", e.V)})
	}
	if h != e.Hash {
		// Does the content fit another seq? Then it was moved, not edited.
		for d := int64(-8); d <= 8; d++ {
			s := e.Seq + d
			if d == 0 || s < 1 {
				continue
			}
			if h2, ok := hashAsSeq(&v.buf, e, s); ok && h2 == e.Hash {
				switch {
				case s < e.Seq:
					return v.fail(&Problem{Seq: s, Kind: ProblemInserted, Message: fmt.Sprintf("the event now at seq %d was written as seq %d: %d event(s) were inserted before it", e.Seq, s, e.Seq-s)})
				default:
					v.pending = &Problem{Seq: e.Seq, Kind: ProblemDeleted, Message: fmt.Sprintf("the event now at seq %d was written as seq %d: events were deleted and the rest renumbered", e.Seq, s)}
					v.pendingSeq = s
					return nil
				}
			}
		}
		return v.fail(&Problem{Seq: e.Seq, Kind: ProblemEdited, Message: fmt.Sprintf("the event at seq %d does not match its hash: its content was changed", e.Seq)})
	}
	if e.PrevHash != v.prev {
		for _, r := range v.recent {
			if r.Seq > 0 && r.Seq < e.Seq-1 && r.Hash == e.PrevHash {
				return v.fail(&Problem{Seq: r.Seq + 1, Kind: ProblemInserted, Message: fmt.Sprintf("seq %d links to seq %d: the events from seq %d to %d are not part of the chain (inserted)", e.Seq, r.Seq, r.Seq+1, e.Seq-1)})
			}
		}
		return v.fail(&Problem{Seq: e.Seq, Kind: ProblemInserted, Message: fmt.Sprintf("seq %d does not link to seq %d: an event was inserted or replaced there", e.Seq, e.Seq-1)})
	}
	for v.ci < len(v.cps) && v.cps[v.ci].Seq <= e.Seq {
		c := v.cps[v.ci]
		if c.Seq == e.Seq {
			if c.Hash != e.Hash {
				return v.fail(&Problem{Seq: e.Seq, Kind: ProblemRewritten, Message: fmt.Sprintf("the event at seq %d differs from the checkpoint signed at %s: the chain was rolled back and rewritten, or rewritten wholesale", e.Seq, c.Time.Format("2006-01-02T15:04:05Z07:00"))})
			}
			v.checkpointed = e.Seq
		}
		v.ci++
	}
	v.recent[e.Seq%int64(len(v.recent))] = Receipt{Seq: e.Seq, Hash: e.Hash}
	v.prev = e.Hash
	v.next++
	v.count++
	return nil
}

// finish reports what only the end of the chain shows.
func (v *chainVerifier) finish() *Problem {
	if v.problem != nil {
		return v.problem
	}
	if v.pending != nil {
		return v.fail(v.pending)
	}
	if len(v.cps) > 0 {
		last := v.cps[len(v.cps)-1]
		if last.Seq >= v.next {
			return v.fail(&Problem{Seq: v.next, Kind: ProblemTruncated, Message: fmt.Sprintf("the chain ends at seq %d but a checkpoint signed at %s covers seq %d: the newest events were deleted or the database was rolled back to an older copy", v.next-1, last.Time.Format("2006-01-02T15:04:05Z07:00"), last.Seq)})
		}
	}
	return nil
}

// hashAsSeq hashes e as if it had sequence number seq.
func hashAsSeq(buf *[]byte, e *Event, seq int64) (Hash, bool) {
	if e.V != Version1 {
		return Hash{}, false
	}
	c := *e
	c.Seq = seq
	*buf = AppendCanonical((*buf)[:0], &c)
	return sha256.Sum256(*buf), true
}
