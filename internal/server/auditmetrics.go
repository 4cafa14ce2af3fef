package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"warden/internal/audit"
)

// registerAuditMetrics exposes the audit writer's counters: how many events
// and group commits it wrote, the time spent committing, and failed commits.
// events/batches is the average group size; commit seconds per batch is
// what one governed call waits for at least.
func registerAuditMetrics(reg prometheus.Registerer, l *audit.Log) {
	counter := func(name, help string, v func(audit.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return v(l.Stats()) })
	}
	reg.MustRegister(
		counter("warden_audit_events_total", "Audit events committed (admin changes included).",
			func(s audit.Stats) float64 { return float64(s.Events) }),
		counter("warden_audit_commits_total", "Audit group commits (transactions) written.",
			func(s audit.Stats) float64 { return float64(s.Batches) }),
		counter("warden_audit_commit_seconds_total", "Time spent in audit commit transactions.",
			func(s audit.Stats) float64 { return s.Commit.Seconds() }),
		counter("warden_audit_commit_failures_total", "Audit commits that failed (their governed calls were refused).",
			func(s audit.Stats) float64 { return float64(s.Failures) }),
	)
}
