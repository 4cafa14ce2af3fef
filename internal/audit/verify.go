package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"warden"
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
	// ProblemArchivedGap: a retention cut does not hold together: its anchor
	// differs from the signed checkpoint at its seq, anchors do not follow
	// each other, or an archive file does not fit the anchor it ends at (the
	// anchor row was deleted or edited, or the file changed).
	ProblemArchivedGap ProblemKind = "archived_gap"
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
	CheckpointedSeq int64 `json:"checkpointed_seq"`
	// ArchivedSeq is the newest retention cut: events up to it were
	// archived and the database's chain starts after it.
	ArchivedSeq int64 `json:"archived_seq,omitempty"`
	// ArchivedEvents counts the events checked in archive files.
	ArchivedEvents int64    `json:"archived_events,omitempty"`
	Problem        *Problem `json:"problem,omitempty"`
	Warnings       []string `json:"warnings,omitempty"`
}

// Reader is what Verify reads; Store satisfies it.
type Reader interface {
	ScanAudit(ctx context.Context, after int64, fn func(*Event) error) error
	AuditHead(ctx context.Context) (Head, error)
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
}

// AnchorReader is what Verify reads to start after a retention cut; Store
// satisfies it. A Reader without it is verified from seq 1.
type AnchorReader interface {
	AuditAnchors(ctx context.Context) ([]Anchor, error)
}

// VerifyOptions add outside evidence to Verify.
type VerifyOptions struct {
	// Archives are archive files written by retention (ReadArchiveFile);
	// their events are checked as part of the chain, their checkpoints like
	// the database's own, and each file against the anchor it ends at.
	Archives []*ArchiveFile
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
// seq from 1 (or from the newest retention anchor), the head row, and each
// checkpoint's signature and hash against the chain. After retention, each
// anchor must match the signed checkpoint at its seq, and archive files
// given in o are checked as the chain's archived segments. It returns an
// error only when it cannot read; a broken chain is a Report with OK false
// and the Problem at the first bad seq.
func Verify(ctx context.Context, r Reader, o VerifyOptions) (Report, error) {
	rep, err := verifyOnce(ctx, r, o)
	if err != nil || rep.OK {
		return rep, err
	}
	// A retention cut that committed between reading the anchors and
	// reading the events looks like deleted events: if the cuts changed
	// meanwhile, look again.
	if ar, ok := r.(AnchorReader); ok {
		if anchors, aerr := ar.AuditAnchors(ctx); aerr == nil && len(anchors) > 0 && anchors[len(anchors)-1].Seq != rep.ArchivedSeq {
			return verifyOnce(ctx, r, o)
		}
	}
	return rep, nil
}

func verifyOnce(ctx context.Context, r Reader, o VerifyOptions) (Report, error) {
	var rep Report
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return rep, unavailable(err, "cannot read audit checkpoints")
	}
	outside := append([]Checkpoint(nil), o.Checkpoints...)
	for _, a := range o.Archives {
		outside = append(outside, a.Checkpoints...)
	}
	all := append(append([]Checkpoint(nil), cps...), outside...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	rep.Checkpoints = len(all)

	var problems []*Problem
	keyOf := o.PublicKey
	if keyOf == nil {
		recorded := map[string]ed25519.PublicKey{}
		for _, c := range outside {
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
	signed := map[int64][]Hash{} // seq -> hashes of checkpoints whose signature verifies
	for _, c := range all {
		if p := checkSignature(c, keyOf); p != nil {
			problems = append(problems, p)
			continue
		}
		signed[c.Seq] = append(signed[c.Seq], c.Hash)
	}

	var anchors []Anchor
	if ar, ok := r.(AnchorReader); ok {
		if anchors, err = ar.AuditAnchors(ctx); err != nil {
			return rep, unavailable(err, "cannot read the audit retention anchors")
		}
	}
	problems = append(problems, checkAnchors(anchors, signed, keyOf)...)

	// The chain in the database starts after the newest cut; archive files
	// supply the segments before it.
	var base Head
	if len(anchors) > 0 {
		last := anchors[len(anchors)-1]
		base = Head{Seq: last.Seq, Hash: last.Hash}
		rep.ArchivedSeq = last.Seq
	}
	archEnd, coveredTo, archProblems, err := verifyArchives(o.Archives, anchors, all, &rep)
	if err != nil {
		return rep, err
	}
	problems = append(problems, archProblems...)
	if archEnd.Seq > base.Seq {
		// The archives reach past the newest anchor: the anchor row for
		// their cut is missing (reported above); check the database from
		// where the archives end.
		base = archEnd
	}
	if base.Seq > 0 && coveredTo < base.Seq {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("events 1 to %d were archived by retention: checkpoints up to seq %d were checked by signature and against the retention anchors only; give the archive files (--archive) to check those events", base.Seq, base.Seq))
	}

	v := newChainVerifierFrom(base, checkpointsAfter(all, base.Seq, 1<<62))
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
	if rep.CheckpointedSeq == 0 && base.Seq > 0 && hasHash(signed[base.Seq], base.Hash) {
		rep.CheckpointedSeq = base.Seq
	}
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

// checkAnchors checks that each retention anchor is signed by a trusted
// audit key, that the anchors follow each other from seq 1, and that each
// is vouched for by a validly signed checkpoint at its seq with the same
// hash: an anchor edited, or one invented to cover events deleted without
// archiving them, fails one of these.
func checkAnchors(anchors []Anchor, signed map[int64][]Hash, keyOf func(string) (ed25519.PublicKey, bool)) []*Problem {
	var out []*Problem
	prev := int64(0)
	for _, a := range anchors {
		pub, trusted := keyOf(a.KeyID)
		switch {
		case !trusted || len(pub) != ed25519.PublicKeySize || len(a.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, a.SignedMessage(), a.Sig):
			out = append(out, &Problem{Seq: a.Seq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("the retention anchor at seq %d is not signed by a trusted audit key (key %q): it was written or edited outside retention, and the events it covers were deleted without a trusted cut", a.Seq, a.KeyID)})
		case a.FirstSeq != prev+1:
			out = append(out, &Problem{Seq: prev + 1, Kind: ProblemArchivedGap, Message: fmt.Sprintf("the retention cut at seq %d says its archive starts at seq %d, but the previous cut ended at seq %d", a.Seq, a.FirstSeq, prev)})
		case a.CheckpointSeq != a.Seq || len(signed[a.Seq]) == 0:
			out = append(out, &Problem{Seq: a.Seq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("the retention cut at seq %d has no validly signed checkpoint at its seq: the anchor was edited or invented", a.Seq)})
		case !allHash(signed[a.Seq], a.Hash):
			out = append(out, &Problem{Seq: a.Seq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("the retention anchor at seq %d records a hash that differs from the checkpoint signed at that seq: the anchor was edited", a.Seq)})
		}
		prev = a.Seq
	}
	return out
}

// verifyArchives checks archive files as segments of the chain: each one's
// events from its first seq, linked to the anchor (or archive) before it,
// ending exactly at the anchor of its cut, with the SHA-256 the anchor
// recorded. It returns the end of the newest archive whose chain verified
// and how far the archives cover the chain contiguously from seq 1.
func verifyArchives(archives []*ArchiveFile, anchors []Anchor, all []Checkpoint, rep *Report) (last Head, coveredTo int64, out []*Problem, err error) {
	bySeq, byFirst := map[int64]Anchor{}, map[int64]Anchor{}
	for _, a := range anchors {
		bySeq[a.Seq] = a
		byFirst[a.FirstSeq] = a
	}
	sorted := append([]*ArchiveFile(nil), archives...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].FirstSeq < sorted[j].FirstSeq })
	ends := map[int64]Hash{} // end seq -> last hash of archives that verified
	for _, f := range sorted {
		if f.FirstSeq == coveredTo+1 {
			coveredTo = f.LastSeq
		}
		var start Head
		if f.FirstSeq > 1 {
			if h, ok := ends[f.FirstSeq-1]; ok {
				start = Head{Seq: f.FirstSeq - 1, Hash: h}
			} else if a, ok := bySeq[f.FirstSeq-1]; ok {
				start = Head{Seq: a.Seq, Hash: a.Hash}
			} else {
				out = append(out, &Problem{Seq: f.FirstSeq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("archive %s starts at seq %d, but nothing records the end of the chain before it (no retention anchor at seq %d, no archive given that ends there)", f.Name, f.FirstSeq, f.FirstSeq-1)})
				continue
			}
		}
		a, anchored := byFirst[f.FirstSeq]
		upTo := f.LastSeq
		if anchored {
			upTo = max(upTo, a.Seq)
		}
		v := newChainVerifierFrom(start, checkpointsAfter(all, start.Seq, upTo))
		v.source = "archive " + f.Name + ": "
		err := f.ScanEvents(func(e *Event) error {
			if p := v.add(e); p != nil {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return last, coveredTo, out, warden.Wrap(err, warden.CodeInvalid, "cannot read archive "+f.Name)
		}
		rep.ArchivedEvents += v.count
		if p := v.finish(); p != nil {
			out = append(out, p)
			continue
		}
		end := Head{Seq: v.next - 1, Hash: v.prev}
		switch {
		case !anchored:
			out = append(out, &Problem{Seq: f.LastSeq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("archive %s (seq %d to %d) matches no retention cut in the database: the anchor row was deleted, or the archive belongs to another database", f.Name, f.FirstSeq, f.LastSeq)})
		case a.Seq != end.Seq:
			out = append(out, &Problem{Seq: min(a.Seq, end.Seq) + 1, Kind: ProblemArchivedGap, Message: fmt.Sprintf("archive %s ends at seq %d but its retention cut is at seq %d", f.Name, end.Seq, a.Seq)})
		case a.Hash != end.Hash:
			out = append(out, &Problem{Seq: a.Seq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("archive %s ends with a hash that differs from the retention anchor at seq %d", f.Name, a.Seq)})
		case a.FileSHA256 != f.SHA256:
			out = append(out, &Problem{Seq: a.Seq, Kind: ProblemArchivedGap, Message: fmt.Sprintf("archive %s has SHA-256 %s, not the %s recorded when it was archived: the file was changed", f.Name, f.SHA256, a.FileSHA256)})
		}
		ends[end.Seq] = end.Hash
		if end.Seq > last.Seq {
			last = end
		}
	}
	return last, coveredTo, out, nil
}

// checkpointsAfter returns the checkpoints with from < seq <= to (all is
// sorted by seq).
func checkpointsAfter(all []Checkpoint, from, to int64) []Checkpoint {
	var out []Checkpoint
	for _, c := range all {
		if c.Seq > from && c.Seq <= to {
			out = append(out, c)
		}
	}
	return out
}

func hasHash(hs []Hash, h Hash) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

func allHash(hs []Hash, h Hash) bool {
	for _, x := range hs {
		if x != h {
			return false
		}
	}
	return len(hs) > 0
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
	base         int64  // the retention cut the chain continues from (0: seq 1)
	source       string // prefixes messages ("archive NAME: ")
	next         int64  // expected seq
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

// newChainVerifierFrom starts after start: the first event must be
// start.Seq+1 and link to start.Hash.
func newChainVerifierFrom(start Head, cps []Checkpoint) *chainVerifier {
	return &chainVerifier{base: start.Seq, next: start.Seq + 1, prev: start.Hash, cps: cps}
}

func (v *chainVerifier) fail(p *Problem) *Problem {
	if v.source != "" {
		p.Message = v.source + p.Message
	}
	v.problem = p
	return p
}

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
			msg := fmt.Sprintf("events %d to %d are missing", v.next, e.Seq-1)
			switch {
			case v.count == 0 && v.base > 0:
				msg += fmt.Sprintf(": the retention cut archived only up to seq %d", v.base)
			case v.count == 0:
				msg += " and no retention anchor records them as archived (the anchor row was deleted, or the events were)"
			}
			return v.fail(&Problem{Seq: v.next, Kind: ProblemDeleted, Message: msg})
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
