package store

import (
	"context"
	"time"
)

// SQLite in WAL mode copies the log back into the database file
// ("checkpoint") after a commit once the log holds wal_autocheckpoint pages
// (1,000 by default), inside that commit: the committing writer then writes
// and fsyncs megabytes before it returns. On the audit path that writer is
// the group commit every governed call waits for, so the default puts a
// multi-millisecond stall into the tail of every call about once in a
// hundred commits. Warden checkpoints from a background goroutine instead:
//
//   - every walCheckpointEvery a PASSIVE checkpoint copies what is
//     committed into the database file without blocking the writer or
//     readers;
//   - a PASSIVE checkpoint never lets the log start over while a writer is
//     busy (each commit lands after the checkpoint's snapshot), so once the
//     log holds walRestartFrames frames a RESTART checkpoint follows: it
//     holds the writer back only while it copies the few frames committed
//     since the PASSIVE one and syncs, and the next commit writes the log
//     from its start again (same file, same blocks: no metadata to sync);
//   - the inline checkpoint stays as a backstop only, at a threshold the
//     background one keeps the log far below.

// walCheckpointEvery is how often the background checkpoint runs.
const walCheckpointEvery = 100 * time.Millisecond

// walRestartFrames is the log length (frames, about 4 KiB each) at which
// the background checkpoint makes the log start over.
const walRestartFrames = 2000

// walBackstopPages is wal_autocheckpoint: an inline checkpoint happens only
// if the background one falls this far behind (about 40 MB of log).
const walBackstopPages = 10000

// startWALCheckpointer runs the background checkpoint until stopCheckpointer.
func (s *Store) startWALCheckpointer() {
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
}

// walCheckpoint copies committed log pages into the database file. A
// failure is not an error anyone must handle: the log keeps the pages and
// the next run (or the inline backstop) copies them.
func (s *Store) walCheckpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy, logFrames, done int64
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done); err != nil || logFrames < walRestartFrames {
		return
	}
	_ = s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &logFrames, &done)
}

func (s *Store) stopWALCheckpointer() {
	if s.cpStop == nil {
		return
	}
	close(s.cpStop)
	<-s.cpDone
	s.cpStop = nil
}
