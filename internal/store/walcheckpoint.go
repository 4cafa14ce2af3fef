package store

import (
	"context"
	"database/sql"
	"time"

	"warden"
)

// SQLite in WAL mode copies the log back into the database file
// ("checkpoint") after a commit once the log holds wal_autocheckpoint pages
// (1,000 by default), inside that commit: the committing writer then writes
// and fsyncs megabytes before it returns. On the audit path that writer is
// the group commit every governed call waits for, so the default puts a
// multi-millisecond stall into the tail of every call about once in a
// hundred commits. Warden checkpoints from a background goroutine instead:
//
//   - every walCheckpointEvery a PASSIVE checkpoint, on its own connection,
//     copies what is committed into the database file without blocking
//     the writer or readers;
//   - a PASSIVE checkpoint never lets the log start over while a writer is
//     busy: each commit lands after the checkpoint's snapshot, so the log is
//     never wholly copied when the next transaction begins, which is when
//     SQLite starts the log over. Once the log holds walRestartFrames
//     frames, the audit writer, between two batches, runs one more PASSIVE
//     checkpoint itself (walCatchUp): it copies only the few frames
//     committed since the background one, and its next transaction starts
//     the log over (same file, same blocks: no metadata to sync);
//   - nothing here ever waits for a reader: a reader that holds an old
//     snapshot (an export, a verify) only delays the start-over. A RESTART
//     checkpoint, which holds the write lock while it waits for such a
//     reader, is never used;
//   - the inline checkpoint stays as a backstop only, at a threshold the
//     background one keeps the log far below.

// walCheckpointEvery is how often the background checkpoint runs.
const walCheckpointEvery = 100 * time.Millisecond

// walRestartFrames is the log length (frames, about 4 KiB each) at which
// the audit writer makes the log start over (walCatchUp).
const walRestartFrames = 1000

// walCheckpointBusy is the checkpoint connection's busy timeout
// (milliseconds). PASSIVE checkpoints do not wait on locks; this only
// bounds any wait they might meet.
const walCheckpointBusy = 2

// walBackstopPages is wal_autocheckpoint: an inline checkpoint happens only
// if the background one falls this far behind (about 40 MB of log).
const walBackstopPages = 10000

// startWALCheckpointer opens the checkpoint's own connection and runs the
// background checkpoint until stopWALCheckpointer.
func (s *Store) startWALCheckpointer(ctx context.Context) error {
	db, err := sql.Open("sqlite", sqliteDSN(s.path, walCheckpointBusy))
	if err != nil {
		return warden.Wrap(err, warden.CodeUnavailable, "cannot open the SQLite database for checkpoints")
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return warden.Wrap(err, warden.CodeUnavailable, "cannot open the SQLite database for checkpoints at "+s.path)
	}
	s.cpDB = db
	s.cpStop = make(chan struct{})
	s.cpDone = make(chan struct{})
	go func() {
		defer close(s.cpDone)
		t := time.NewTicker(walCheckpointEvery)
		defer t.Stop()
		for {
			select {
			case <-s.cpStop:
				return
			case <-t.C:
				s.walCheckpoint()
			}
		}
	}()
	return nil
}

// walCheckpoint copies committed log pages into the database file. A
// failure is not an error anyone must handle: the log keeps the pages and
// the next run (or the inline backstop) copies them.
func (s *Store) walCheckpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy, logFrames, done int64
	if err := s.cpDB.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done); err != nil {
		return
	}
	s.walLong.Store(logFrames >= walRestartFrames)
}

// walCatchUp runs between two audit batches, when no audit transaction is
// open: once the log is long, one PASSIVE checkpoint copies what the
// background one has not yet, so the next transaction finds the log wholly
// copied and starts it over. It never waits for anyone.
func (s *Store) walCatchUp(ctx context.Context) {
	if s.cpDB == nil || !s.walLong.Load() {
		return
	}
	var busy, logFrames, done int64
	if err := s.cpDB.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done); err == nil && done == logFrames {
		s.walLong.Store(false)
	}
}

func (s *Store) stopWALCheckpointer() {
	if s.cpStop == nil {
		return
	}
	close(s.cpStop)
	<-s.cpDone
	s.cpStop = nil
	s.cpDB.Close()
}
