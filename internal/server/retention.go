package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"warden/internal/audit"
	"warden/internal/auditsink"
	"warden/internal/config"
)

// retention runs audit retention (docs/audit-retention.md) every
// cfg.AuditRetention.Every until ctx ends: events older than Keep, up to a
// signed checkpoint and never past what every streaming sink has
// delivered, move to an archive file and leave the database. It does
// nothing when Keep is 0. The first run comes after first.
func retention(ctx context.Context, cfg config.Config, log *slog.Logger, l *audit.Log, sinks *auditsink.Sinks, first time.Duration) {
	r := cfg.AuditRetention
	if r.Keep <= 0 {
		return
	}
	dir := r.Dir
	if dir == "" {
		dir = filepath.Join(cfg.Data, "audit-archive")
	}
	every := r.Every
	if every == 0 {
		every = time.Hour
	}
	maxEvents := r.MaxEvents
	if maxEvents == 0 {
		maxEvents = 100000
	}
	run := func() {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		res, err := l.Archive(rctx, audit.ArchiveOptions{
			Before: time.Now().Add(-r.Keep), Dir: dir, Floor: sinks.MinCursor, MaxEvents: maxEvents, Actor: "system:retention",
		})
		switch {
		case err != nil:
			log.Error("audit retention failed; nothing was deleted that is not in an archive file", "err", err)
		case res.Skipped != "":
			log.Debug("audit retention: nothing to archive", "why", res.Skipped)
		default:
			log.Info("audit retention archived events", "events", res.Events, "through_seq", res.Anchor.Seq, "file", res.Path)
		}
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
			t.Reset(every)
		}
	}
}
