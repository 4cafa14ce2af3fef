// Package server assembles Warden: it opens storage and the keyring, builds
// the domain services and the API, serves HTTP and shuts down cleanly.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"warden"
	"warden/internal/api"
	"warden/internal/approval"
	"warden/internal/audit"
	"warden/internal/authn"
	"warden/internal/config"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/discovery"
	"warden/internal/elevation"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/mcp"
	"warden/internal/monitor"
	"warden/internal/pgwire"
	"warden/internal/policy"
	"warden/internal/proxy"
	"warden/internal/seal"
	"warden/internal/store"
)

// Options configure Run.
type Options struct {
	Config config.Config
	Logger *slog.Logger
	// Stdout receives the dev-mode banner (root token, first steps).
	Stdout io.Writer
	// Getenv reads WARDEN_MASTER_KEY (default os.Getenv).
	Getenv func(string) string
	// Listener, when set, is served instead of listening on Config.Listen
	// (tests pass 127.0.0.1:0).
	Listener net.Listener
	// Ready, when set, is called with the listening address once the server
	// is ready.
	Ready func(addr string)
}

// Run serves until ctx is cancelled, then shuts down gracefully: in-flight
// requests finish (up to the configured grace), background writers flush,
// storage closes.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	master, err := masterKey(&cfg, o.Getenv, log)
	if err != nil {
		return err
	}
	if cfg.RootToken.IsZero() {
		if !cfg.Dev {
			return errors.New("no admin token configured: set WARDEN_ROOT_TOKEN (at least 16 characters) or root_token in the config file; use --dev to try Warden with a generated one")
		}
		cfg.RootToken = warden.NewSecret(warden.NewKey(warden.KeyPrefixAdmin))
	}

	st, err := store.Open(ctx, store.Options{DataDir: cfg.Data, DSN: cfg.Database})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer st.Close()

	// WARDEN_MASTER_KEY_PREVIOUS: the former master key during a
	// zero-downtime master-key rotation (docs/seal.md).
	var previous [][]byte
	if v := o.Getenv("WARDEN_MASTER_KEY_PREVIOUS"); v != "" {
		p, err := seal.ParseMasterKey(v)
		if err != nil {
			return fmt.Errorf("WARDEN_MASTER_KEY_PREVIOUS: %w", err)
		}
		previous = append(previous, p)
	}
	keyring, err := seal.Open(ctx, master, st, previous...)
	clear(master)
	for _, p := range previous {
		clear(p)
	}
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	defer keyring.Close()

	// The audit log: open before anything can be governed or changed, so
	// every call and change is recorded; closed (with a final signed
	// checkpoint) after the HTTP server has drained.
	auditLog, err := audit.Open(ctx, audit.Options{
		Store: st, Keyring: keyring, Logger: log,
		CheckpointFile: filepath.Join(cfg.Data, audit.CheckpointFileName),
	})
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer auditLog.Close(context.Background())

	var authSvc *authn.Service
	var creds *credential.Service
	// Approvals: a webhook (when configured) tells humans about requests.
	var notifier *approval.Webhook
	approvalOpts := approval.Options{Store: st, TTL: cfg.ApprovalTTL, Logger: log}
	if cfg.ApprovalWebhookURL != "" {
		notifier = approval.NewWebhook(approval.WebhookOptions{URL: cfg.ApprovalWebhookURL, Secret: cfg.ApprovalWebhookSecret, PublicURL: cfg.PublicURL, Logger: log})
		approvalOpts.Notifier = notifier
	}
	approvals := approval.New(approvalOpts)

	ids := identity.New(identity.Options{Store: st, OnChange: func(id *identity.Identity) {
		authSvc.IdentityChanged(id)
		creds.IdentityChanged(id.ID, id.Status == identity.StatusActive) // drops cached material, revokes its database leases
		if id.Status != identity.StatusActive {
			// A stopped identity's pending approvals die with it.
			if err := approvals.IdentityStopped(context.Background(), id.ID); err != nil {
				log.Error("expiring approvals of a stopped identity", "identity", id.ID, "err", err)
			}
		}
	}})
	authSvc = authn.New(authn.Options{
		Store: st, Keys: keyring, Identities: ids, Logger: log,
		RootToken: cfg.RootToken, Audience: cfg.Audience, TokenTTL: cfg.TokenTTL,
	})
	if err := authSvc.Load(ctx); err != nil {
		return fmt.Errorf("loading identities: %w", err)
	}

	engine := policy.NewEngine(policy.Options{})
	policies := policy.NewService(st, engine)
	if err := policies.Reload(ctx); err != nil {
		// A stored policy that no longer compiles stays out of force (its
		// rules grant nothing); the others load. Say so loudly.
		log.Error("some stored policies are not in force", "err", err)
	}
	creds = credential.New(credential.Options{Store: st, Sealer: keyring, Logger: log, Dev: cfg.Dev})
	catalog, err := connector.LoadCatalog()
	if err != nil {
		return fmt.Errorf("connector catalog: %w", err)
	}
	connectors := connector.NewRegistry(st, catalog)
	if err := connectors.Reload(ctx); err != nil {
		log.Error("some stored connectors are not in force", "err", err)
	}
	// auditor makes the gate's records durable; when the audit log cannot
	// write, every governed call fails closed with 503 audit_unavailable.
	var auditor gate.Auditor = gateAuditor{log: auditLog}
	elevations := elevation.New(elevation.Options{Store: st, Policies: policies, Identities: ids, MaxDuration: cfg.MaxElevation})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerAuditMetrics(reg, auditLog)
	// Audit sinks stream the chain from their own cursors: they never hold
	// up Append, and resume where they stopped (docs/audit-sinks.md).
	auditSinks, err := newAuditSinks(cfg, st, reg, log, o.Getenv)
	if err != nil {
		return err
	}
	// The behaviour monitor: the gate hands it every decided and completed
	// call (an enqueue that never blocks) and consults its breaker's
	// throttle; it suspends through the registry (docs/monitor.md).
	var (
		mon      *monitor.Monitor
		observer gate.Observer
		throttle gate.Throttle
	)
	if !cfg.Monitor.Disabled {
		if mon, err = newMonitor(ctx, cfg, st, ids, auditLog, reg, log); err != nil {
			return err
		}
		observer, throttle = mon, mon
	}
	g := gate.New(gate.Options{Identities: ids, Policies: engine, Credentials: creds, Auditor: auditor, Approvals: approvals, Observer: observer, Throttle: throttle, Logger: log})
	// The database front: POST /v1/execute on postgres connectors, and the
	// PostgreSQL wire listener (docs/database.md).
	dbFront := pgwire.New(pgwire.Options{Gate: g, Authn: authSvc, Identities: ids, Credentials: creds, Connectors: connectors, Policies: engine, Logger: log})
	defer dbFront.Close()
	gw := proxy.New(proxy.Options{Gate: g, Approvals: approvals, Connectors: connectors, SQL: dbFront, Logger: log})
	// The MCP front: /mcp for agents, and the sessions to upstream MCP
	// servers (stdio servers it starts and supervises), stopped at shutdown.
	mcpGW := mcp.New(mcp.Options{Gate: g, Proxy: gw, Connectors: connectors, Policies: engine, Identities: ids, Approvals: approvals, Credentials: creds, Logger: log})
	defer mcpGW.Close()

	ready := new(atomic.Bool)
	handler := api.New(api.Options{
		Identities: ids, Authn: authSvc, Policies: policies, Gate: g, Database: st,
		Credentials: creds, Connectors: connectors, Catalog: catalog, Proxy: gw, MCP: mcpGW, Approvals: approvals, Elevations: elevations,
		Inventory: discovery.NewInventory(st), Changes: st, Audit: auditLog, AuditSinks: auditSinks, Monitor: mon, Logger: log,
		Registry: reg, MaxBodyBytes: cfg.MaxBodyBytes, Ready: ready,
	})

	ln := o.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	pgln, pgTLS, err := postgresListener(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(mcpGW.CloseSessions)

	if cfg.Dev {
		if err := devBootstrap(ctx, o.Stdout, ln.Addr().String(), cfg, ids, policies, connectors, creds); err != nil {
			return err
		}
	}

	bg, stopBG := context.WithCancel(context.Background())
	if notifier != nil {
		go notifier.Run(bg)
	}
	go sweepElevations(bg, log, elevations)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		background(bg, log, st, authSvc, keyring, policies, connectors, creds)
	}()
	if mon != nil {
		// Stopped after the HTTP server drained: it processes what is
		// queued, saves the baselines and finishes pending breaker actions.
		wg.Add(1)
		go func() { defer wg.Done(); mon.Run(bg) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); creds.Run(bg, 10*time.Second) }() // token refresh, scheduled rotation, version retirement, lease sweep
	wg.Add(1)
	go func() { defer wg.Done(); auditSinks.Run(bg) }()
	wg.Add(1)
	// Retention's first run waits a minute so that a restart does not race
	// the start (docs/audit-retention.md).
	go func() { defer wg.Done(); retention(bg, cfg, log, auditLog, auditSinks, time.Minute) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if pgln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dbFront.Serve(bg, pgln, pgwire.ListenerOptions{TLS: pgTLS, WriteTimeout: cfg.PostgresWriteTimeout}); err != nil {
				log.Error("postgres listener stopped", "err", err)
			}
		}()
		log.Info("postgres listener ready", "addr", pgln.Addr().String(), "tls", pgTLS != nil)
	}
	ready.Store(true)
	log.Info("warden ready", "addr", ln.Addr().String(), "engine", string(st.Engine()), "dev", cfg.Dev)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopBG()
		wg.Wait()
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests did not finish in time", "err", err)
	}
	stopBG()
	wg.Wait()
	mcpGW.Close()
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	if err := authSvc.FlushLastUsed(fctx); err != nil {
		log.Warn("flushing last-used times", "err", err)
	}
	if err := auditLog.Close(fctx); err != nil {
		log.Error("closing the audit log (final checkpoint)", "err", err)
	}
	log.Info("stopped")
	return nil
}

// postgresListener opens the PostgreSQL wire listener when configured
// (--postgres-listen), with TLS when a certificate is configured. Without
// TLS, passwords (agent keys and tokens) cross the network in clear: off
// loopback that is logged as a warning on every start.
func postgresListener(cfg config.Config, log *slog.Logger) (net.Listener, *tls.Config, error) {
	if cfg.PostgresListen == "" {
		return nil, nil, nil
	}
	var tc *tls.Config
	if cfg.PostgresTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.PostgresTLSCert, cfg.PostgresTLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("postgres listener TLS: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.PostgresListen)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres listen %s: %w", cfg.PostgresListen, err)
	}
	if tc == nil {
		if host, _, _ := net.SplitHostPort(cfg.PostgresListen); !isLoopback(host) {
			log.Warn("the postgres listener has no TLS and is not on loopback: agents' keys and tokens travel in clear; set postgres_tls_cert and postgres_tls_key", "addr", cfg.PostgresListen)
		}
	}
	return ln, tc, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// masterKey resolves the master key: WARDEN_MASTER_KEY, then the key file,
// then (dev only) the generated key kept in the data dir.
func masterKey(cfg *config.Config, getenv func(string) string, log *slog.Logger) ([]byte, error) {
	if v := getenv("WARDEN_MASTER_KEY"); v != "" {
		return seal.ParseMasterKey(v)
	}
	if cfg.MasterKeyFile != "" {
		return seal.ReadMasterKeyFile(cfg.MasterKeyFile)
	}
	if !cfg.Dev {
		return nil, errors.New("no master key: set WARDEN_MASTER_KEY (base64 of 32 random bytes, e.g. `openssl rand -base64 32`) or --master-key-file; use --dev to try Warden with a generated key")
	}
	if cfg.Database != "" {
		return nil, errors.New("--dev with --database needs WARDEN_MASTER_KEY: dev mode keeps its generated key in the data dir, which a shared database does not have")
	}
	key, created, err := seal.LoadOrCreateDevKey(cfg.Data)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("DEV MODE: generated a master key and stored it next to the data; never do this in production", "file", cfg.Data+"/"+seal.DevKeyFile)
	}
	return key, nil
}

// background runs periodic work: flushing last-used times, and on a shared
// database picking up other replicas' changes (identity status,
// revocations, keys) so they take effect here within about a second.
func background(ctx context.Context, log *slog.Logger, st *store.Store, auth *authn.Service, keyring *seal.Keyring, policies *policy.Service, connectors *connector.Registry, creds *credential.Service) {
	flush := time.NewTicker(5 * time.Second)
	defer flush.Stop()
	var refresh <-chan time.Time
	if st.Engine() == store.Postgres {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		refresh = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			if err := auth.FlushLastUsed(ctx); err != nil && ctx.Err() == nil {
				log.Warn("flushing last-used times", "err", err)
			}
			if err := creds.FlushLastUsed(ctx); err != nil && ctx.Err() == nil {
				log.Warn("flushing credential last-used times", "err", err)
			}
		case <-refresh:
			if err := auth.Load(ctx); err != nil && ctx.Err() == nil {
				log.Warn("refreshing shared state", "err", err)
			}
			if err := keyring.Reload(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reloading keyring", "err", err)
			}
			if err := policies.Reload(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reloading policies", "err", err)
			}
			if err := connectors.Reload(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reloading connectors", "err", err)
			}
			// Other replicas may have rotated or deleted credentials.
			creds.Purge()
		}
	}
}

// sweepElevations retires expired grants' policies (they are inert from
// their expiry on; this keeps the policy list tidy).
func sweepElevations(ctx context.Context, log *slog.Logger, e *elevation.Service) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := e.Sweep(ctx); err != nil && ctx.Err() == nil {
				log.Warn("sweeping expired elevations", "err", err)
			}
		}
	}
}
