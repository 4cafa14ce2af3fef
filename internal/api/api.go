// Package api is Warden's REST API: admin and agent routes over the domain
// services. Every route is registered in routes.go with the check that
// guards it; handlers translate HTTP to domain calls and back, nothing more.
package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/approval"
	"warden/internal/audit"
	"warden/internal/authn"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/discovery"
	"warden/internal/elevation"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/mcp"
	"warden/internal/monitor"
	"warden/internal/policy"
	"warden/internal/proxy"
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
	Credentials  *credential.Service
	Connectors   *connector.Registry
	Catalog      *connector.Catalog
	Proxy        *proxy.Proxy
	MCP          *mcp.Gateway // /mcp, and MCP tool approval on connector PUT
	Approvals    *approval.Service
	Elevations   *elevation.Service
	Inventory    *discovery.Inventory
	Database     Health
	Changes      Changes
	Audit        *audit.Log       // GET /v1/audit, /v1/audit/verify, /v1/audit/export, /v1/audit/checkpoints
	AuditSinks   AuditSinks       // GET /v1/audit/sinks
	Monitor      *monitor.Monitor // /v1/findings, /v1/breaker
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
	proxy   http.Handler
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
		if r.Method == "ANY" {
			continue // the proxy front, dispatched in ServeHTTP
		}
		a.mux.Handle(r.Method+" "+r.Pattern, a.wrap(r))
	}
	a.mux.Handle("/", a.wrap(route{Pattern: "/", Auth: authNone, Handler: a.notFound}))
	for _, r := range a.routes() {
		if r.Method == "ANY" {
			a.proxy = a.wrap(r)
		}
	}
	return a
}

// ServeHTTP implements http.Handler. The proxy front is dispatched before
// the mux: the mux would answer unclean paths (dot segments, double
// slashes) with a redirect, while the gateway refuses them with a clear
// problem and never forwards them.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, proxy.Prefix) || strings.HasPrefix(r.URL.EscapedPath(), proxy.Prefix) {
		a.proxy.ServeHTTP(w, r)
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) proxyCall(w http.ResponseWriter, r *http.Request) error {
	if a.o.Proxy == nil {
		return warden.Errorf(warden.CodeNotFound, "the gateway is not enabled")
	}
	a.o.Proxy.ServeHTTP(w, r, principal(r))
	return nil
}

// serveMCP hands /mcp to the MCP front with the identity this request's
// own bearer token authenticated.
func (a *API) serveMCP(w http.ResponseWriter, r *http.Request) error {
	if a.o.MCP == nil {
		return warden.Errorf(warden.CodeNotFound, "the MCP gateway is not enabled")
	}
	a.o.MCP.ServeMCP(w, r, principal(r))
	return nil
}

// putConnectorMCP lets the MCP front record a type: mcp connector's
// upstream tools (the approved definitions and their pins) before the
// connector PUT compiles and saves it; other documents pass through.
func (a *API) putConnectorMCP(w http.ResponseWriter, r *http.Request) error {
	if a.o.MCP != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return bodyError(err)
		}
		body, ct, err := a.o.MCP.PrepareConnector(r.Context(), principal(r), r.PathValue("name"), body, r.Header.Get("Content-Type"))
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
	}
	return a.putConnector(w, r)
}

func (a *API) acceptMCPChanges(w http.ResponseWriter, r *http.Request) error {
	if a.o.MCP == nil {
		return warden.Errorf(warden.CodeNotFound, "the MCP gateway is not enabled")
	}
	res, err := a.o.MCP.AcceptChanges(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (a *API) mcpTools(w http.ResponseWriter, r *http.Request) error {
	if a.o.MCP == nil {
		return warden.Errorf(warden.CodeNotFound, "the MCP gateway is not enabled")
	}
	res, err := a.o.MCP.Tools(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (a *API) notFound(w http.ResponseWriter, r *http.Request) error {
	return warden.Errorf(warden.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
}
