package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"warden"
)

// Retention moves the oldest events out of the database into archive files
// without breaking what Verify can prove (docs/audit-retention.md):
//
//  1. The cut is always at a stored signed checkpoint, so a signature
//     vouches for the hash the remaining chain continues from.
//  2. The archive file (the events as export writes them, then the signed
//     checkpoints of the range) is written to a temporary file, fsynced,
//     renamed and its directory fsynced before anything is deleted.
//  3. Only then one transaction records the anchor (cut seq, hash, file
//     name, SHA-256 of the file) and deletes the archived events. If it
//     fails, nothing was deleted and the file is an extra copy: running
//     again rewrites the same file and retries.
//
// Checkpoints are never deleted. Appends continue while retention runs: it
// never touches the head row and deletes only rows below the cut.

// ArchiveOptions configure Archive.
type ArchiveOptions struct {
	// Before archives the events covered by checkpoints signed before this
	// time; BeforeSeq archives events with seq < BeforeSeq. Exactly one is
	// set. The cut is the newest stored checkpoint that qualifies.
	Before    time.Time
	BeforeSeq int64
	// Dir receives the archive file audit-archive-FIRST-LAST.jsonl.
	Dir string
	// Floor, when set, returns the highest seq the cut may reach (for
	// example the lowest seq every streaming sink has delivered), so no
	// event is deleted before it left the building. 0 archives nothing.
	Floor func(ctx context.Context) (int64, error)
	// MaxEvents, when > 0, prefers a cut that archives at most this many
	// events (the newest qualifying checkpoint within it; the oldest
	// qualifying one when none is), so one run holds the database's write
	// lock briefly. A periodic caller catches up over several runs.
	MaxEvents int64
	// Actor is recorded in the anchor ("system" when empty).
	Actor string
	// Signer gives the audit signing key, which signs the anchor
	// (required: an unsigned anchor would let anyone who can write the
	// database delete events). (*Log).Archive supplies it from the
	// keyring; KeyringSigner makes one from a keyring.
	Signer func(ctx context.Context) (kid string, priv ed25519.PrivateKey, err error)
	// PublicKey resolves checkpoint keys: the cut's signature is checked
	// before anything is archived, and public keys are recorded next to
	// the checkpoints in the file. Optional.
	PublicKey func(kid string) (ed25519.PublicKey, bool)
	Now       func() time.Time
}

// ArchiveResult says what Archive did.
type ArchiveResult struct {
	// Anchor is the cut made; zero when nothing was archived.
	Anchor Anchor `json:"anchor"`
	// Path is the archive file written.
	Path   string `json:"path,omitempty"`
	Events int64  `json:"events"`
	// Skipped says why nothing was archived ("" when something was).
	Skipped string `json:"skipped,omitempty"`
}

// ArchiveFileName is the name of the archive of events first to last.
func ArchiveFileName(first, last int64) string {
	return fmt.Sprintf("audit-archive-%d-%d.jsonl", first, last)
}

// Archive runs retention once on the log's store, with the keyring's keys
// (see the package function Archive). The server calls it periodically.
func (l *Log) Archive(ctx context.Context, o ArchiveOptions) (ArchiveResult, error) {
	if o.PublicKey == nil {
		o.PublicKey = l.keys.PublicKey
	}
	if o.Now == nil {
		o.Now = l.o.Now
	}
	if o.Signer == nil {
		o.Signer = KeyringSigner(l.keys)
	}
	return Archive(ctx, l.store, o)
}

// KeyringSigner gives the keyring's audit signing key (the key that signs
// checkpoints) for retention anchors.
func KeyringSigner(k Keyring) func(ctx context.Context) (string, ed25519.PrivateKey, error) {
	return func(ctx context.Context) (string, ed25519.PrivateKey, error) {
		kid, priv, err := k.Signer(ctx, signerName)
		if err != nil {
			return "", nil, unavailable(err, "cannot get the audit signing key")
		}
		return kid, priv, nil
	}
}

// Archive moves the events up to the newest qualifying signed checkpoint
// into an archive file in o.Dir and then deletes them from the database,
// recording an anchor (see ArchiveOptions and the comment above). When no
// checkpoint qualifies it archives nothing and says why in Skipped. It
// refuses to archive a range whose chain does not verify.
func Archive(ctx context.Context, st Store, o ArchiveOptions) (ArchiveResult, error) {
	var res ArchiveResult
	if o.Dir == "" {
		return res, warden.FieldError("dir", "is required: where the archive file goes")
	}
	if o.Before.IsZero() == (o.BeforeSeq <= 0) {
		return res, warden.FieldError("before", "give a time or a seq (exactly one)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Actor == "" {
		o.Actor = "system"
	}
	if o.Signer == nil {
		return res, warden.Errorf(warden.CodeInvalid, "retention signs its cut with the audit signing key: the master key is required")
	}
	kid, priv, err := o.Signer(ctx)
	if err != nil {
		return res, err
	}
	anchors, err := st.AuditAnchors(ctx)
	if err != nil {
		return res, unavailable(err, "cannot read the audit retention anchors")
	}
	var prev Head
	if len(anchors) > 0 {
		a := anchors[len(anchors)-1]
		prev = Head{Seq: a.Seq, Hash: a.Hash}
	}
	limit := int64(1<<63 - 1)
	if o.BeforeSeq > 0 {
		limit = o.BeforeSeq - 1
	}
	if o.Floor != nil {
		f, err := o.Floor(ctx)
		if err != nil {
			return res, unavailable(err, "cannot read the retention floor")
		}
		limit = min(limit, f)
	}
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		return res, unavailable(err, "cannot read audit checkpoints")
	}
	var candidates []Checkpoint
	for _, c := range cps {
		if c.Seq > prev.Seq && c.Seq <= limit && (o.Before.IsZero() || c.Time.Before(o.Before)) {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		res.Skipped = fmt.Sprintf("no signed checkpoint after seq %d qualifies for the cut (before the given time or seq, and within the floor): nothing archived", prev.Seq)
		return res, nil
	}
	cut := candidates[len(candidates)-1]
	if o.MaxEvents > 0 {
		cut = candidates[0]
		for _, c := range candidates {
			if c.Seq-prev.Seq <= o.MaxEvents {
				cut = c
			}
		}
	}
	if o.PublicKey != nil {
		if p := checkSignature(cut, o.PublicKey); p != nil {
			return res, warden.Errorf(warden.CodeInternal, "refusing to archive: %s (run warden audit verify)", p.Message)
		}
		for i := range cps {
			if pub, ok := o.PublicKey(cps[i].KeyID); ok && len(cps[i].PublicKey) == 0 {
				cps[i].PublicKey = pub
			}
		}
	}

	path, sum, err := writeArchive(ctx, st, o.Dir, prev, cut, checkpointsAfter(cps, prev.Seq, cut.Seq))
	if err != nil {
		return res, err
	}
	a := Anchor{Seq: cut.Seq, FirstSeq: prev.Seq + 1, Hash: cut.Hash, CheckpointSeq: cut.Seq, File: filepath.Base(path),
		FileSHA256: sum, Time: o.Now().UTC().Truncate(time.Microsecond), Actor: o.Actor}
	a.KeyID = kid
	a.Sig = ed25519.Sign(priv, a.SignedMessage())
	n, err := st.ArchiveAudit(ctx, a)
	if err != nil {
		return res, warden.Wrap(err, warden.ErrorCode(err), fmt.Sprintf("archived events %d to %d to %s, but could not delete them from the database (they are still there; the file is an extra copy and the next run rewrites it)",
			a.FirstSeq, a.Seq, path))
	}
	return ArchiveResult{Anchor: a, Path: path, Events: n}, nil
}

// writeArchive writes events prev.Seq+1 to cut.Seq, checking their chain
// as it goes, then cps, to a durable file in dir and returns its path and
// SHA-256. The file appears under its final name only once complete and
// synced.
func writeArchive(ctx context.Context, st Store, dir string, prev Head, cut Checkpoint, cps []Checkpoint) (string, Hash, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot create the archive directory")
	}
	final := filepath.Join(dir, ArchiveFileName(prev.Seq+1, cut.Seq))
	tmp, err := os.CreateTemp(dir, ".audit-archive-*.tmp")
	if err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot create the archive file")
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, sum), 256<<10)
	enc := NewEncoder(bw)
	v := newChainVerifierFrom(prev, cps)
	err = st.ScanAudit(ctx, prev.Seq, func(e *Event) error {
		if e.Seq > cut.Seq {
			return errStop
		}
		if p := v.add(e); p != nil {
			return p
		}
		return enc.Encode(e)
	})
	var p *Problem
	switch {
	case errors.As(err, &p):
		return "", Hash{}, warden.Errorf(warden.CodeInternal, "refusing to archive a chain that does not verify: %s (run warden audit verify)", p.Error())
	case err != nil && !errors.Is(err, errStop):
		return "", Hash{}, unavailable(err, "cannot read the audit log")
	}
	if p := v.finish(); p != nil {
		return "", Hash{}, warden.Errorf(warden.CodeInternal, "refusing to archive a chain that does not verify: %s (run warden audit verify)", p.Error())
	}
	if v.next-1 != cut.Seq || v.prev != cut.Hash {
		return "", Hash{}, warden.Errorf(warden.CodeInternal, "refusing to archive: the chain ends at seq %d, not at the checkpoint's seq %d", v.next-1, cut.Seq)
	}
	for _, c := range cps {
		b, err := MarshalCheckpoint(c)
		if err != nil {
			return "", Hash{}, err
		}
		bw.Write(append(b, '\n'))
	}
	if err := bw.Flush(); err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot write the archive file")
	}
	if err := tmp.Sync(); err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot sync the archive file")
	}
	if err := tmp.Close(); err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot write the archive file")
	}
	var h Hash
	sum.Sum(h[:0])
	// Never replace an archive: one that a committed anchor names must
	// keep the bytes the anchor hashed (a replica losing a race, or a rerun
	// that saw other checkpoints, would write other bytes). A link fails
	// when the name exists; the same bytes there are fine, other bytes
	// are a conflict to resolve by hand.
	if err := os.Link(tmp.Name(), final); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot move the archive file into place")
		}
		if old, err := fileSHA256(final); err != nil || old != h {
			return "", Hash{}, warden.Errorf(warden.CodeConflict, "%s already exists with other contents: it may be the archive a committed cut names; move it aside only after checking it with warden audit verify --archive", final)
		}
	}
	os.Remove(tmp.Name())
	done = true
	if err := syncDir(dir); err != nil {
		return "", Hash{}, warden.Wrap(err, warden.CodeUnavailable, "cannot sync the archive directory")
	}
	return final, h, nil
}

func fileSHA256(path string) (Hash, error) {
	f, err := os.Open(path)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return Hash{}, err
	}
	var h Hash
	sum.Sum(h[:0])
	return h, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ArchiveFile is an archive file read by ReadArchiveFile: its name,
// SHA-256, the seq range of its events and its checkpoints. The events are
// read again by ScanEvents, so a large archive is never held in memory.
type ArchiveFile struct {
	Path, Name        string
	SHA256            Hash
	FirstSeq, LastSeq int64
	Events            int64
	Checkpoints       []Checkpoint
}

// ReadArchiveFile reads and checks the form of an archive file: event
// lines (as export writes them) followed by checkpoint lines. It does not
// check hashes; Verify does, with the file as a segment of the chain.
func ReadArchiveFile(path string) (*ArchiveFile, error) {
	a := &ArchiveFile{Path: path, Name: filepath.Base(path)}
	sum, err := a.scan(func(e *Event) error {
		if a.Events == 0 {
			a.FirstSeq = e.Seq
		}
		a.LastSeq = e.Seq
		a.Events++
		return nil
	}, func(c Checkpoint) { a.Checkpoints = append(a.Checkpoints, c) })
	if err != nil {
		return nil, err
	}
	if a.Events == 0 {
		return nil, fmt.Errorf("archive %s holds no events", a.Name)
	}
	a.SHA256 = sum
	return a, nil
}

// ScanEvents calls fn for each event of the file, in file order. It fails
// if the file changed since ReadArchiveFile.
func (a *ArchiveFile) ScanEvents(fn func(*Event) error) error {
	sum, err := a.scan(fn, nil)
	if err != nil {
		return err
	}
	if sum != a.SHA256 {
		return fmt.Errorf("archive %s changed while it was being read", a.Name)
	}
	return nil
}

func (a *ArchiveFile) scan(onEvent func(*Event) error, onCheckpoint func(Checkpoint)) (Hash, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(f, h), 256<<10)
	var (
		e           Event
		checkpoints bool
	)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(bytes.TrimSpace(line)) > 0 {
				return Hash{}, fmt.Errorf("archive %s line %d is incomplete", a.Name, n)
			}
			break
		}
		if err != nil {
			return Hash{}, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if c, ok := parseCheckpointLine(line); ok {
			checkpoints = true
			if onCheckpoint != nil {
				onCheckpoint(c)
			}
			continue
		}
		e = Event{}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return Hash{}, fmt.Errorf("archive %s line %d is neither an event nor a checkpoint", a.Name, n)
		}
		if checkpoints {
			return Hash{}, fmt.Errorf("archive %s line %d: an event after the checkpoints", a.Name, n)
		}
		if err := onEvent(&e); err != nil {
			return Hash{}, err
		}
	}
	var sum Hash
	h.Sum(sum[:0])
	return sum, nil
}

// parseCheckpointLine reads a line of the checkpoint file's format. An
// event line never parses as one: it has fields a checkpoint does not.
func parseCheckpointLine(line []byte) (Checkpoint, bool) {
	var cl checkpointLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cl); err != nil || cl.V != 1 || cl.Seq < 1 {
		return Checkpoint{}, false
	}
	return Checkpoint{Seq: cl.Seq, Hash: cl.Hash, Time: cl.Time.UTC(), KeyID: cl.KeyID, Sig: cl.Sig, PublicKey: cl.PublicKey}, true
}
