package store_test

import (
	"database/sql"
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

// A long reader (an export, a verify) keeps the log from starting over; the
// checkpoint that waits for it must not hold writers back meanwhile.
func TestWALCheckpointNeverStallsWritersBehindAReader(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE ckpt_probe (b TEXT)`); err != nil {
		t.Fatal(err)
	}
	row := strings.Repeat("z", 3000)
	insert := func() time.Duration {
		t0 := time.Now()
		if _, err := db.ExecContext(ctx, `INSERT INTO ckpt_probe VALUES (?)`, row); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	// A reader holds a snapshot...
	rtx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rtx.QueryRowContext(ctx, `SELECT count(*) FROM ckpt_probe`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// ...while the log grows past the point where the checkpoint tries to
	// make it start over, and keeps being written for a while.
	var worst time.Duration
	deadline := time.Now().Add(1500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline) || i < 3000; i++ {
		if d := insert(); d > worst {
			worst = d
		}
	}
	_ = rtx.Rollback()
	if worst > 500*time.Millisecond {
		t.Fatalf("a write waited %v behind the checkpoint while a reader held the old log", worst)
	}
}
