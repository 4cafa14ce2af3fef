package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"warden"
)

// ErrUnavailable is the cause of every Append failure: the event is not
// durable and the operation it describes must not proceed. Such errors carry
// code warden.CodeUnavailable; the gateway answers 503 audit_unavailable.
var ErrUnavailable = errors.New("audit: log unavailable")

// ErrTampered is the cause of Open's refusal to start on a database that
// does not match the checkpoint file (rolled back, truncated or rewritten).
var ErrTampered = errors.New("audit: chain does not match its checkpoints")

// Keyring is what the log needs from internal/seal's Keyring: the "audit"
// signing key for checkpoints, public keys to verify them, and sealing for
// the HMAC key it keeps in the database.
type Keyring interface {
	Signer(ctx context.Context, name string) (kid string, priv ed25519.PrivateKey, err error)
	PublicKey(kid string) (ed25519.PublicKey, bool)
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// Options configure Open.
type Options struct {
	Store   Store
	Keyring Keyring
	// CheckpointFile is the append-only file that receives a copy of every
	// checkpoint ("" for none; the server uses <data>/audit-checkpoints.jsonl).
	CheckpointFile string
	// CheckpointEvery and CheckpointInterval: a checkpoint is made once this
	// many events were appended since the last one, or this much time passed
	// with new events, and at Close. Defaults 10000 and 30s.
	CheckpointEvery    int64
	CheckpointInterval time.Duration
	// PumpInterval is how often admin changes are adopted when no append
	// comes along (every append batch adopts them too). Default 1s.
	PumpInterval time.Duration
	// MaxBatch bounds the events one transaction carries. Default 2048.
	MaxBatch int
	// WriteTimeout bounds one batch's transaction. Default 10s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// CheckpointFileName is the checkpoint file's name in the data directory.
const CheckpointFileName = "audit-checkpoints.jsonl"

// signerName is the keyring signing key for checkpoints ("sign:audit").
const signerName = "audit"

// maxChangesPerBatch bounds the admin changes one batch adopts.
const maxChangesPerBatch = 256

// Log is the audit log. It is safe for concurrent use.
type Log struct {
	o       Options
	store   Store
	keys    Keyring
	macKey  []byte
	reqs    chan *request
	quit    chan struct{}
	cpKick  chan struct{}
	stopped chan struct{}
	cpDone  chan struct{}

	closeMu sync.RWMutex // held shared by Append while it enqueues
	closed  bool

	stats struct {
		events, batches, failures, commitNanos atomic.Int64
	}

	// retry holds Enqueue'd events whose batch failed; the writer owns it
	// and puts them first in the next batch.
	retry []*request

	cpMu      sync.Mutex // one checkpoint at a time; guards lastCP and file
	lastCP    Checkpoint
	lastCPSeq atomic.Int64 // lastCP.Seq, read by the writer without cpMu
	file      *checkpointFile
}

type request struct {
	ev    Event
	pump  bool
	async bool // Enqueue: nobody waits; the writer retries it until it commits
	done  chan result
	count int // pump: changes adopted
}

type result struct {
	r     Receipt
	err   error
	count int
}

var reqPool = sync.Pool{New: func() any { return &request{done: make(chan result, 1)} }}

// Open prepares the store, loads the HMAC key (creating it on first use),
// checks the database against the checkpoint file (refusing, with
// ErrTampered, a database behind or different from a checkpoint it signed)
// and starts the writer.
func Open(ctx context.Context, o Options) (*Log, error) {
	if o.Store == nil || o.Keyring == nil {
		return nil, warden.Errorf(warden.CodeInternal, "audit.Open: store and keyring are required")
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 10000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 30 * time.Second
	}
	if o.PumpInterval <= 0 {
		o.PumpInterval = time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2048
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.Store.PrepareAudit(ctx); err != nil {
		return nil, unavailable(err, "cannot prepare the audit log")
	}
	if _, _, err := o.Keyring.Signer(ctx, signerName); err != nil {
		return nil, unavailable(err, "cannot get the audit signing key")
	}
	l := &Log{
		o: o, store: o.Store, keys: o.Keyring,
		reqs:    make(chan *request, 4*o.MaxBatch),
		quit:    make(chan struct{}),
		cpKick:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
		cpDone:  make(chan struct{}),
	}
	var err error
	if l.macKey, err = loadMACKey(ctx, o.Store, o.Keyring, o.Now()); err != nil {
		return nil, err
	}
	if cps, err := o.Store.Checkpoints(ctx); err != nil {
		return nil, unavailable(err, "cannot read audit checkpoints")
	} else if len(cps) > 0 {
		l.lastCP = cps[len(cps)-1]
		l.lastCPSeq.Store(l.lastCP.Seq)
	}
	if o.CheckpointFile != "" {
		f, fileCPs, err := openCheckpointFile(o.CheckpointFile)
		if err != nil {
			return nil, err
		}
		if err := l.checkAgainst(ctx, fileCPs); err != nil {
			f.close()
			return nil, err
		}
		l.file = f
	}
	go l.writer()
	go l.checkpointer()
	return l, nil
}

// checkAgainst refuses a database whose chain is behind, or differs from,
// the newest checkpoint in the file: the database was rolled back,
// truncated or rewritten. Only the newest needs checking at start; Verify
// checks them all.
func (l *Log) checkAgainst(ctx context.Context, cps []Checkpoint) error {
	if len(cps) == 0 {
		return nil
	}
	last := cps[len(cps)-1]
	head, err := l.store.AuditHead(ctx)
	if err != nil {
		return unavailable(err, "cannot read the audit head")
	}
	if head.Seq < last.Seq {
		return warden.Wrap(ErrTampered, warden.CodeInternal, "the audit log ends at seq "+itoa(head.Seq)+
			" but the checkpoint file holds a signed checkpoint at seq "+itoa(last.Seq)+
			": the database was rolled back or its newest events deleted (see docs/audit.md, \"Recovering\")")
	}
	h, ok, err := l.store.AuditEventHash(ctx, last.Seq)
	if err != nil {
		return unavailable(err, "cannot read the audit log")
	}
	if !ok || h != last.Hash {
		return warden.Wrap(ErrTampered, warden.CodeInternal, "the audit event at seq "+itoa(last.Seq)+
			" does not match the signed checkpoint in the checkpoint file: the database was rolled back and rewritten, or edited (run warden audit verify)")
	}
	return nil
}

// Append writes e to the chain and returns once it is durable. Concurrent
// callers share one transaction (group commit). On failure the error has
// code warden.CodeUnavailable and matches ErrUnavailable; the event may or
// may not have been written (a commit whose answer was lost), but an event
// Append acknowledged is never lost. A caller whose ctx ends while waiting
// gets an error too; its event may still be written.
func (l *Log) Append(ctx context.Context, e Event) (Receipt, error) {
	if err := normalize(&e, l.o.Now()); err != nil {
		return Receipt{}, warden.Wrap(errors.Join(ErrUnavailable, err), warden.CodeUnavailable, "audit event refused: "+err.Error())
	}
	req := reqPool.Get().(*request)
	req.ev, req.pump = e, false
	if err := l.enqueue(ctx, req); err != nil {
		return Receipt{}, err
	}
	select {
	case res := <-req.done:
		req.ev = Event{}
		reqPool.Put(req)
		return res.r, res.err
	case <-ctx.Done():
		// The writer still owns req; it is not returned to the pool.
		return Receipt{}, unavailable(ctx.Err(), "gave up waiting for the audit log")
	}
}

// Enqueue queues e for the next group commit and returns without waiting
// for it to be durable. It is for records of what already happened and
// whose caller has nothing to hold back, like the outcome of a call whose
// answer the agent already has; "decided" events, which must be durable
// before anything is forwarded, use Append. An enqueued event is committed
// in the writer's next batch (usually within one sync), retried while the
// database refuses writes, and committed by Close; only a crash in that
// window loses it. Enqueue blocks while the queue is full (backpressure,
// never a drop) and fails only when ctx ends first or the log is closed.
func (l *Log) Enqueue(ctx context.Context, e Event) error {
	if err := normalize(&e, l.o.Now()); err != nil {
		return warden.Wrap(errors.Join(ErrUnavailable, err), warden.CodeUnavailable, "audit event refused: "+err.Error())
	}
	req := reqPool.Get().(*request)
	req.ev, req.pump, req.async = e, false, true
	if err := l.enqueue(ctx, req); err != nil {
		req.ev, req.async = Event{}, false
		reqPool.Put(req)
		return err
	}
	return nil
}

func (l *Log) enqueue(ctx context.Context, req *request) error {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return unavailable(nil, "the audit log is closed")
	}
	select {
	case l.reqs <- req:
		return nil
	case <-ctx.Done():
		return unavailable(ctx.Err(), "gave up waiting for the audit log")
	}
}

// Pump adopts every pending admin change into the chain now and reports how
// many it adopted. The log also pumps on every append batch and every
// PumpInterval.
func (l *Log) Pump(ctx context.Context) (int, error) {
	total := 0
	for {
		req := &request{pump: true, done: make(chan result, 1)}
		if err := l.enqueue(ctx, req); err != nil {
			return total, err
		}
		select {
		case res := <-req.done:
			total += res.count
			if res.err != nil || res.count < maxChangesPerBatch {
				return total, res.err
			}
		case <-ctx.Done():
			return total, unavailable(ctx.Err(), "gave up waiting for the audit log")
		}
	}
}

// writer is the single goroutine that commits batches: it takes whatever
// requests are queued (up to MaxBatch), commits them in one transaction
// together with pending admin changes, and answers them all. Requests that
// arrive while a batch commits form the next batch, so the batch size adapts
// to the load and an idle log commits one event at a time without waiting.
func (l *Log) writer() {
	defer close(l.stopped)
	tick := time.NewTicker(l.o.PumpInterval)
	defer tick.Stop()
	batch := make([]*request, 0, l.o.MaxBatch)
	for {
		batch = append(batch[:0], l.retry...)
		l.retry = l.retry[:0]
		if len(batch) > 0 {
			// A failed batch left enqueued events: wait a moment (the
			// database is refusing writes) and try again with whatever
			// else is queued.
			select {
			case <-time.After(retryPause):
			case <-l.quit:
				l.closing(batch)
				return
			}
		} else {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			case <-tick.C:
			case <-l.quit:
				l.closing(batch)
				return
			}
		}
		l.drain(&batch)
		if !l.linger(&batch) {
			l.closing(batch)
			return
		}
		l.commit(batch)
	}
}

// asyncLinger is how long a batch holding only enqueued events waits for
// an Append to share its commit.
const asyncLinger = 2 * time.Millisecond

// linger holds back a batch in which nobody waits (only enqueued events)
// for up to asyncLinger, until an Append or a pump joins it or it is full.
// Committing such a batch at once would make the next Append, which a
// governed call is waiting on, queue behind a sync that nobody needed yet;
// sharing the Append's commit instead costs that Append nothing. It
// reports false if the log is closing (the caller commits batch then).
func (l *Log) linger(batch *[]*request) bool {
	if !onlyAsync(*batch) {
		return true
	}
	t := time.NewTimer(asyncLinger)
	defer t.Stop()
	for len(*batch) < l.o.MaxBatch {
		select {
		case r := <-l.reqs:
			*batch = append(*batch, r)
			if !r.async {
				l.drain(batch)
				return true
			}
		case <-t.C:
			return true
		case <-l.quit:
			return false
		}
	}
	return true
}

func onlyAsync(batch []*request) bool {
	if len(batch) == 0 {
		return false
	}
	for _, r := range batch {
		if !r.async {
			return false
		}
	}
	return true
}

// retryPause is how long the writer waits before retrying enqueued events
// whose batch failed.
const retryPause = 100 * time.Millisecond

// closing commits what is queued at Close and answers every waiter. Enqueued
// events get a few attempts; those that still cannot be written are logged
// as lost, since nobody is left to retry them.
func (l *Log) closing(batch []*request) {
	for attempt := 0; ; {
		l.drain(&batch)
		if len(batch) == 0 {
			return
		}
		l.commit(batch)
		batch = append(batch[:0], l.retry...)
		l.retry = l.retry[:0]
		if len(batch) > 0 {
			if attempt++; attempt >= 3 {
				l.o.Logger.Error("audit: enqueued events lost at close: the log could not write them", "events", len(batch))
				return
			}
			time.Sleep(retryPause)
		}
	}
}

func (l *Log) drain(batch *[]*request) {
	for len(*batch) < l.o.MaxBatch {
		select {
		case r := <-l.reqs:
			*batch = append(*batch, r)
		default:
			return
		}
	}
}

// commit writes one batch (possibly empty: a pump) and answers its requests.
func (l *Log) commit(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.WriteTimeout)
	defer cancel()
	began := time.Now()
	defer func() { l.stats.commitNanos.Add(int64(time.Since(began))) }()
	var (
		events  []*Event
		adopted int
	)
	var scratch []byte
	// A batch of appends adopts admin changes only when this process may
	// have made some; pumps (a tick, Pump, Close) always look.
	limit := maxChangesPerBatch
	forced := len(batch) == 0
	for _, r := range batch {
		forced = forced || r.pump
	}
	if !forced && !l.store.ChangesMaybePending() {
		limit = 0
	}
	err := l.store.AppendAudit(ctx, limit, func(head Head, changes []PendingChange) (Batch, error) {
		events = events[:0]
		b := Batch{ChangeEvent: make([]int, len(changes))}
		for i, c := range changes {
			ev := changeEvent(c.Change)
			if err := normalize(ev, l.o.Now()); err != nil {
				return Batch{}, err
			}
			b.ChangeEvent[i] = len(events)
			events = append(events, ev)
		}
		for _, r := range batch {
			if !r.pump {
				ev := r.ev // copy: build may run twice
				events = append(events, &ev)
			}
		}
		seq, prev := head.Seq, head.Hash
		for _, ev := range events {
			seq++
			ev.Seq, ev.V, ev.PrevHash = seq, Version1, prev
			ev.Hash, scratch, _ = ComputeHash(scratch, ev)
			prev = ev.Hash
		}
		b.Events = events
		adopted = len(changes)
		return b, nil
	})
	if err != nil {
		l.o.Logger.Error("audit write failed; refusing audited operations until it recovers", "err", err, "events", len(batch))
		l.stats.failures.Add(1)
		err = unavailable(err, "the audit log cannot write")
		for _, r := range batch {
			if r.async {
				l.retry = append(l.retry, r)
				continue
			}
			r.done <- result{err: err}
		}
		return
	}
	l.stats.batches.Add(1)
	l.stats.events.Add(int64(len(events)))
	i := adopted
	for _, r := range batch {
		if r.pump {
			r.done <- result{count: adopted}
			continue
		}
		ev := events[i]
		i++
		if r.async {
			r.ev, r.async = Event{}, false
			reqPool.Put(r)
			continue
		}
		r.done <- result{r: Receipt{Seq: ev.Seq, Hash: ev.Hash}}
	}
	if len(events) > 0 {
		// lastCPSeq, not cpMu: a checkpoint in progress (sign, insert,
		// fsync) must not hold up the next batch.
		if events[len(events)-1].Seq-l.lastCPSeq.Load() >= l.o.CheckpointEvery {
			select {
			case l.cpKick <- struct{}{}:
			default:
			}
		}
	}
}

// changeEvent turns an admin change into its audit event. The event id is
// the change id, so the two records name each other.
func changeEvent(c warden.Change) *Event {
	ev := &Event{
		ID: c.ID, Time: c.At, Kind: KindAdminChange, Actor: c.Actor, Action: c.Action,
		Resource: c.TargetKind + ":" + c.Target, Decision: "applied",
	}
	if c.TargetKind == "identity" {
		ev.Identity = c.Target
	}
	// The event must always be storable: a change that could not be
	// adopted would block the outbox, and with it every append batch.
	if len(c.Detail) > 0 {
		b, err := json.Marshal(c.Detail)
		switch {
		case err != nil:
			ev.Detail = json.RawMessage(`{"detail_omitted":"not encodable"}`)
		case len(b) > maxDetail:
			sum := sha256.Sum256(b)
			ev.Detail, _ = json.Marshal(map[string]any{"detail_omitted": "larger than 64 KiB", "bytes": len(b), "sha256": hex.EncodeToString(sum[:])})
		default:
			ev.Detail = b
		}
	}
	return ev
}

// Close stops accepting events, commits those already queued, makes a final
// checkpoint and stops. Appends after Close fail with ErrUnavailable. Close
// is idempotent.
func (l *Log) Close(ctx context.Context) error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	l.closeMu.Unlock()
	close(l.quit)
	<-l.stopped
	<-l.cpDone
	_, err := l.Checkpoint(ctx)
	l.cpMu.Lock()
	if l.file != nil {
		if cerr := l.file.close(); err == nil {
			err = cerr
		}
		l.file = nil
	}
	l.cpMu.Unlock()
	return err
}

// MAC returns a keyed HMAC-SHA256 of a sensitive value, for events that must
// show that two calls carried the same value without storing it:
// "hmac-sha256:" and 64 hex digits. The key is random, per installation,
// kept in the database sealed by the keyring; the same value gives the same
// MAC across restarts and replicas.
func (l *Log) MAC(value string) string {
	m := hmac.New(sha256.New, l.macKey)
	m.Write([]byte(value))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

const macKeyID = "hmac.1"

func macAAD(id string) []byte { return []byte("audit_keys:" + id) }

// loadMACKey opens the sealed HMAC key, creating it on first use. Replicas
// racing to create it insert the same id; the loser reads the winner's.
func loadMACKey(ctx context.Context, st Store, k Keyring, now time.Time) ([]byte, error) {
	for range 3 {
		sealed, err := st.AuditKey(ctx, macKeyID)
		if err == nil {
			key, err := k.Open(sealed, macAAD(macKeyID))
			if err != nil {
				return nil, warden.Wrap(err, warden.CodeInternal, "the audit HMAC key does not open")
			}
			return key, nil
		}
		if !warden.IsCode(err, warden.CodeNotFound) {
			return nil, unavailable(err, "cannot read the audit HMAC key")
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, warden.Wrap(err, warden.CodeInternal, "cannot read random bytes")
		}
		sealed, err = k.Seal(key, macAAD(macKeyID))
		if err != nil {
			return nil, warden.Wrap(err, warden.CodeInternal, "cannot seal the audit HMAC key")
		}
		err = st.InsertAuditKey(ctx, macKeyID, sealed, now)
		if err == nil {
			return key, nil
		}
		if !warden.IsCode(err, warden.CodeConflict) {
			return nil, unavailable(err, "cannot store the audit HMAC key")
		}
	}
	return nil, warden.Errorf(warden.CodeUnavailable, "could not create the audit HMAC key")
}

// unavailable wraps a write-path failure: code unavailable, ErrUnavailable
// in the chain, the cause kept for logs.
func unavailable(cause error, msg string) error {
	if cause == nil {
		return warden.Wrap(ErrUnavailable, warden.CodeUnavailable, msg)
	}
	return warden.Wrap(errors.Join(ErrUnavailable, cause), warden.CodeUnavailable, msg)
}

func itoa(n int64) string {
	return formatInt(n)
}

// Query returns one page of events (see the package function Query).
// Admin changes committed before the call are adopted first, so a reader
// sees the change it just made (read your writes); if adopting fails the
// query still answers from what is in the chain.
func (l *Log) Query(ctx context.Context, f Filter, cursor string) ([]Event, string, error) {
	l.adoptBeforeRead(ctx)
	return Query(ctx, l.store, f, cursor)
}

// Export writes matching events (see the package function Export), after
// adopting pending admin changes like Query.
func (l *Log) Export(ctx context.Context, w io.Writer, format string, f Filter) (int64, error) {
	l.adoptBeforeRead(ctx)
	return Export(ctx, l.store, w, format, f)
}

func (l *Log) adoptBeforeRead(ctx context.Context) {
	if _, err := l.Pump(ctx); err != nil {
		l.o.Logger.Warn("audit: adopting pending admin changes before a read failed; answering from the chain as it is", "err", err)
	}
}

// Verify checks the chain against the database's checkpoints and the
// checkpoint file, with keys from the keyring.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	var o VerifyOptions
	o.PublicKey = l.keys.PublicKey
	if l.o.CheckpointFile != "" {
		cps, _, err := ReadCheckpointFile(l.o.CheckpointFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return Report{}, warden.Wrap(err, warden.CodeInternal, "cannot read the audit checkpoint file")
		}
		o.Checkpoints = cps
	}
	return Verify(ctx, l.store, o)
}

// Checkpoints returns the database's checkpoints, each with the public key
// of the key that signed it (for export: see GET /v1/audit/checkpoints).
func (l *Log) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	cps, err := l.store.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	for i := range cps {
		if pub, ok := l.keys.PublicKey(cps[i].KeyID); ok {
			cps[i].PublicKey = pub
		}
	}
	return cps, nil
}

// Stats are counters since Open, for metrics and benchmarks.
type Stats struct {
	Events   int64         // events committed (admin changes included)
	Batches  int64         // transactions committed
	Failures int64         // transactions that failed (their appends got ErrUnavailable)
	Commit   time.Duration // total time spent in commit transactions
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{Events: l.stats.events.Load(), Batches: l.stats.batches.Load(), Failures: l.stats.failures.Load(),
		Commit: time.Duration(l.stats.commitNanos.Load())}
}
