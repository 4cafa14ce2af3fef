package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"warden"
)

// Checkpoint is a signed statement "the chain's event seq has hash Hash",
// made at Time with the Ed25519 key KeyID. Kept in the database and, with the
// public key, in the checkpoint file outside it: deleting or rolling back
// the newest events, or rewriting the chain, no longer matches a checkpoint.
type Checkpoint struct {
	Seq   int64
	Hash  Hash
	Time  time.Time
	KeyID string
	Sig   []byte
	// PublicKey is recorded in the checkpoint file (not in the database) so
	// the file can be checked without the keyring; see docs/audit.md for
	// why it must still be pinned.
	PublicKey ed25519.PublicKey
}

// checkpointPrefix starts the signed message of a version-1 checkpoint.
const checkpointPrefix = "warden.audit.checkpoint/v1\n"

// SignedMessage is what a checkpoint's signature covers:
// "warden.audit.checkpoint/v1\n" || seq (uint64 BE) || hash (32 bytes) ||
// time (int64 BE, µs since the epoch) || key id.
func (c Checkpoint) SignedMessage() []byte {
	b := make([]byte, 0, len(checkpointPrefix)+8+32+8+len(c.KeyID))
	b = append(b, checkpointPrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = append(b, c.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(micros(c.Time)))
	return append(b, c.KeyID...)
}

// checkpointLine is one line of the checkpoint file.
type checkpointLine struct {
	V         int       `json:"v"`
	Seq       int64     `json:"seq"`
	Hash      Hash      `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	PublicKey []byte    `json:"public_key"`
	Sig       []byte    `json:"sig"`
}

// MarshalCheckpoint is the checkpoint file's line format (without newline).
func MarshalCheckpoint(c Checkpoint) ([]byte, error) {
	return json.Marshal(checkpointLine{V: 1, Seq: c.Seq, Hash: c.Hash, Time: c.Time.UTC(), KeyID: c.KeyID, PublicKey: c.PublicKey, Sig: c.Sig})
}

// ReadCheckpoints parses a checkpoint file. A last line without a newline is
// a write the process did not finish (a crash) and is ignored; torn reports
// whether there was one. Any other malformed line is an error naming it.
func ReadCheckpoints(r io.Reader) (cps []Checkpoint, torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return cps, len(bytes.TrimSpace(line)) > 0, nil
		}
		if err != nil {
			return nil, false, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var cl checkpointLine
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cl); err != nil || cl.V != 1 || cl.Seq < 1 {
			return nil, false, fmt.Errorf("checkpoint file line %d is not a checkpoint", n)
		}
		cps = append(cps, Checkpoint{Seq: cl.Seq, Hash: cl.Hash, Time: cl.Time.UTC(), KeyID: cl.KeyID, Sig: cl.Sig, PublicKey: cl.PublicKey})
	}
}

// ReadCheckpointFile reads the checkpoint file at path.
func ReadCheckpointFile(path string) ([]Checkpoint, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	return ReadCheckpoints(f)
}

// checkpointFile is the append-only copy of the checkpoints outside the
// database. Each line is written with one write and then fsynced.
type checkpointFile struct {
	f *os.File
}

// openCheckpointFile opens (creating) the file for appending, cuts a torn
// last line left by a crash (an unfinished write, never a checkpoint that
// was acknowledged) and returns the checkpoints it holds.
func openCheckpointFile(path string) (*checkpointFile, []Checkpoint, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, unavailable(err, "cannot create the directory of the audit checkpoint file")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, unavailable(err, "cannot open the audit checkpoint file")
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, unavailable(err, "cannot read the audit checkpoint file")
	}
	cps, torn, err := ReadCheckpoints(bytes.NewReader(data))
	if err != nil {
		f.Close()
		return nil, nil, warden.Wrap(errors.Join(ErrTampered, err), warden.CodeInternal, "the audit checkpoint file "+path+" is damaged: "+err.Error())
	}
	if torn {
		keep := int64(bytes.LastIndexByte(data, '\n') + 1)
		if err := f.Truncate(keep); err != nil {
			f.Close()
			return nil, nil, unavailable(err, "cannot repair the audit checkpoint file")
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, unavailable(err, "cannot open the audit checkpoint file")
	}
	return &checkpointFile{f: f}, cps, nil
}

func (cf *checkpointFile) append(c Checkpoint) error {
	b, err := MarshalCheckpoint(c)
	if err != nil {
		return err
	}
	if _, err := cf.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return cf.f.Sync()
}

func (cf *checkpointFile) close() error { return cf.f.Close() }

// Checkpoint signs the current head and records it in the database and the
// checkpoint file. It does nothing when the head is already checkpointed
// (or the chain is empty) and returns the newest checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	head, err := l.store.AuditHead(ctx)
	if err != nil {
		return Checkpoint{}, unavailable(err, "cannot read the audit head")
	}
	if head.Seq == 0 || head.Seq <= l.lastCP.Seq {
		return l.lastCP, nil
	}
	kid, priv, err := l.keys.Signer(ctx, signerName)
	if err != nil {
		return Checkpoint{}, unavailable(err, "cannot get the audit signing key")
	}
	c := Checkpoint{Seq: head.Seq, Hash: head.Hash, Time: l.o.Now().UTC().Truncate(time.Microsecond), KeyID: kid}
	c.Sig = ed25519.Sign(priv, c.SignedMessage())
	c.PublicKey = append(ed25519.PublicKey(nil), priv.Public().(ed25519.PublicKey)...)
	// Database first, then the file: a crash in between leaves the file a
	// subset of the database, which Verify accepts.
	if err := l.store.InsertCheckpoint(ctx, c); err != nil {
		return Checkpoint{}, unavailable(err, "cannot store the audit checkpoint")
	}
	if l.file != nil {
		if err := l.file.append(c); err != nil {
			return Checkpoint{}, unavailable(err, "cannot write the audit checkpoint file")
		}
	}
	l.lastCP = c
	l.lastCPSeq.Store(c.Seq)
	return c, nil
}

// checkpointer makes checkpoints when the writer says enough events passed,
// and every CheckpointInterval when there are new events.
func (l *Log) checkpointer() {
	defer close(l.cpDone)
	t := time.NewTicker(l.o.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stopped:
			return
		case <-l.cpKick:
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.o.WriteTimeout)
		if _, err := l.Checkpoint(ctx); err != nil {
			l.o.Logger.Error("audit checkpoint failed", "err", err)
		}
		cancel()
	}
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }
