// Package api is Warden's REST API: admin and agent routes over the domain
// services. Every route is registered in routes.go with the check that
// guards it; handlers translate HTTP to domain calls and back, nothing more.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/authn"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/policy"
)

// Health reports whether a dependency is ready.
type Health interface {
	Ping(ctx context.Context) error
}

// Changes lists recorded admin changes.
type Changes interface {
	ListChanges(ctx context.Context, target string, limit int) ([]warden.Change, error)
}

// Options are the API's dependencies.
type Options struct {
	Identities   *identity.Service
	Authn        *authn.Service
	Policies     *policy.Service
	Gate         *gate.Gate
	Database     Health
	Changes      Changes
	Logger       *slog.Logger
	Registry     prometheus.Registerer
	MaxBodyBytes int64
	// Ready gates /readyz (false during start-up and shutdown).
	Ready *atomic.Bool
}

// API is the HTTP handler.
type API struct {
	o       Options
	mux     *http.ServeMux
	metrics *metrics
}

// New builds the API handler.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Ready == nil {
		o.Ready = new(atomic.Bool)
		o.Ready.Store(true)
	}
	a := &API{o: o, mux: http.NewServeMux(), metrics: newMetrics(o.Registry)}
	for _, r := range a.routes() {
		a.mux.Handle(r.Method+" "+r.Pattern, a.wrap(r))
	}
	a.mux.Handle("/", a.wrap(route{Pattern: "/", Auth: authNone, Handler: a.notFound}))
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) notFound(w http.ResponseWriter, r *http.Request) error {
	return warden.Errorf(warden.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
}
