package server

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/auditsink"
	"warden/internal/config"
	"warden/internal/store"
)

// newAuditSinks builds the streaming audit sinks from the configuration.
// A webhook's signing secret comes from the environment variable the
// configuration names; a named variable that is empty stops the start
// rather than sending unsigned batches.
func newAuditSinks(cfg config.Config, st *store.Store, reg prometheus.Registerer, log *slog.Logger, getenv func(string) string) (*auditsink.Sinks, error) {
	sinks := make([]auditsink.Config, 0, len(cfg.AuditSinks))
	for _, s := range cfg.AuditSinks {
		c := s.Sink()
		if s.SecretEnv != "" {
			v := getenv(s.SecretEnv)
			if v == "" {
				return nil, fmt.Errorf("audit sink %q: secret_env names %s, which is not set", s.Name, s.SecretEnv)
			}
			c.Secret = warden.NewSecret(v)
		}
		if s.AuthorizationEnv != "" {
			v := getenv(s.AuthorizationEnv)
			if v == "" {
				return nil, fmt.Errorf("audit sink %q: authorization_env names %s, which is not set", s.Name, s.AuthorizationEnv)
			}
			c.Authorization = warden.NewSecret(v)
		}
		sinks = append(sinks, c)
	}
	return auditsink.New(auditsink.Options{Store: st, Sinks: sinks, Registry: reg, Logger: log})
}
