package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/internal/store"
)

// Committed pages reach the database file through the background
// checkpoint, long before the inline backstop (about 40 MB of log) would
// copy them: in WAL mode the main file grows only when a checkpoint runs.
func TestWALCheckpointRunsInTheBackground(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := filepath.Join(dir, "warden.db")
	size := func() int64 {
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if _, err := st.DB().ExecContext(ctx, `CREATE TABLE ckpt_probe (b TEXT)`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the table reach the file
	before := size()
	row := strings.Repeat("x", 4000)
	for i := 0; i < 500; i++ { // about 2 MB, far below the backstop
		if _, err := st.DB().ExecContext(ctx, `INSERT INTO ckpt_probe VALUES (?)`, row); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() < before+1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d): the committed pages were not checkpointed", size(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Under writes that never pause, the log still starts over: it stays far
// below the inline backstop (about 40 MB), so no commit ever pays for
// checkpointing the whole of it.
func TestWALStartsOverUnderContinuousWrites(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.DB().ExecContext(ctx, `CREATE TABLE ckpt_probe (b TEXT)`); err != nil {
		t.Fatal(err)
	}
	row := strings.Repeat("y", 3000)
	var maxWAL int64
	for i := 0; i < 4000; i++ { // about 4,000 frames: 16 MB of log if it never started over
		if _, err := st.DB().ExecContext(ctx, `INSERT INTO ckpt_probe VALUES (?)`, row); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "warden.db-wal")); err == nil && fi.Size() > maxWAL {
			maxWAL = fi.Size()
		}
	}
	if maxWAL > 12<<20 {
		t.Fatalf("the log grew to %d bytes under continuous writes: it never started over", maxWAL)
	}
}
