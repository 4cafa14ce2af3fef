package server

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"warden/internal/audit"
	"warden/internal/auditsink"
	"warden/internal/config"
	"warden/internal/seal"
	"warden/internal/store"
)

// The server's retention loop archives events older than keep, up to a
// signed checkpoint, into the configured directory; the chain still
// verifies across the cut.
func TestRetentionLoopArchivesOldEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := seal.Open(ctx, master, st)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	// The events and their checkpoint are two hours old.
	then := time.Now().Add(-2 * time.Hour)
	l, err := audit.Open(ctx, audit.Options{Store: st, Keyring: keys, Now: func() time.Time { return then }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	for i := 0; i < 20; i++ {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.KindDecided, Actor: "identity:nhi_x", Action: "svc:op", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	sinks, err := auditsink.New(auditsink.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Data = t.TempDir()
	cfg.AuditRetention = config.AuditRetention{Keep: time.Hour}
	done := make(chan struct{})
	go func() { defer close(done); retention(ctx, cfg, slog.New(slog.DiscardHandler), l, sinks, 0) }()
	dir := filepath.Join(cfg.Data, "audit-archive")
	want := filepath.Join(dir, audit.ArchiveFileName(1, 20))
	// The archive file is in place before the cut commits (its anchor and
	// the deletion): wait for the cut, not the file.
	var rep audit.Report
	deadline := time.Now().Add(30 * time.Second)
	for {
		if rep, err = l.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rep.ArchivedSeq != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cut after 30s (verify: %+v)", rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("archive file: %v", err)
	}
	if !rep.OK || rep.ArchivedSeq != 20 {
		t.Fatalf("after retention: ok=%v archived_seq=%d problem=%v", rep.OK, rep.ArchivedSeq, rep.Problem)
	}
}
