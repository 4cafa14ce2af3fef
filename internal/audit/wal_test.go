package audit_test

import (
	"os"
	"path/filepath"
	"testing"

	"warden/internal/store"
)

// Under appends that never pause, SQLite's log still starts over (the
// writer catches the background checkpoint up between batches), so it
// stays far below the inline backstop (about 40 MB) and no commit pays for
// checkpointing all of it.
func TestSQLiteLogStartsOverUnderContinuousAppends(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := newEnv(t, st)
	var maxWAL int64
	for i := 0; i < 4000; i++ { // about 6 frames each: over 90 MB of log if it never started over
		e.append(t, decided(i))
		if fi, err := os.Stat(filepath.Join(dir, "warden.db-wal")); err == nil && fi.Size() > maxWAL {
			maxWAL = fi.Size()
		}
	}
	if maxWAL > 24<<20 {
		t.Fatalf("the log grew to %d bytes under continuous appends: it never started over", maxWAL)
	}
	e.close(t)
	mustOK(t, e.verify(t))
}
