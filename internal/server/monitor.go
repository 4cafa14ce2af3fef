package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"warden/internal/audit"
	"warden/internal/config"
	"warden/internal/identity"
	"warden/internal/monitor"
	"warden/internal/store"
)

// newMonitor builds the behaviour monitor from its configuration and loads
// the saved baselines, so a restart does not learn every identity again.
func newMonitor(ctx context.Context, c config.Config, st *store.Store, ids *identity.Service, auditLog *audit.Log, reg prometheus.Registerer, log *slog.Logger) (*monitor.Monitor, error) {
	mc := c.Monitor
	resp := map[monitor.Severity]monitor.Response{}
	for k, v := range mc.Responses {
		resp[monitor.Severity(k)] = monitor.Response(v)
	}
	minSev := monitor.Severity(mc.WebhookMinSeverity)
	if minSev != "" && minSev.Rank() == 0 {
		return nil, fmt.Errorf("monitor: webhook_min_severity %q must be info, low, medium, high or critical", mc.WebhookMinSeverity)
	}
	m, err := monitor.New(monitor.Options{
		Store: st, Identities: ids, Audit: auditLog, Registry: reg, Logger: log,
		Tuning:    monitor.Tuning{LearningCalls: mc.LearningCalls, LearningPeriod: mc.LearningPeriod, SpikeFloor: mc.SpikeFloor},
		Responses: resp,
		Throttle:  monitor.ThrottleOptions{Rate: mc.ThrottleRate, Burst: mc.ThrottleBurst, For: mc.ThrottleFor},
		QueueSize: mc.QueueSize,
		Webhook:   monitor.WebhookOptions{URL: mc.WebhookURL, Secret: mc.WebhookSecret, PublicURL: c.PublicURL, MinSeverity: minSev, Logger: log},
	})
	if err != nil {
		return nil, err
	}
	if err := m.Load(ctx); err != nil {
		return nil, fmt.Errorf("monitor: loading baselines: %w", err)
	}
	return m, nil
}
