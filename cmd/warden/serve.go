package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"warden/internal/config"
	"warden/internal/server"
)

func newServeCmd(c *cli) *cobra.Command {
	var (
		configFile string
		flags      config.Config
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Warden server",
		Long: `Run the Warden server.

Configuration comes from defaults, then --config FILE (YAML; unknown keys are
errors), then WARDEN_* environment variables, then flags.

Outside dev mode the server needs a master key (WARDEN_MASTER_KEY, base64 of 32
bytes, or --master-key-file) and a root admin token (WARDEN_ROOT_TOKEN or
root_token in the config file), and refuses to start without them.

--dev starts a ready-to-try server: embedded SQLite in a temporary directory
(or --data), a generated master key kept in the data dir (dev only!), a root
token printed at start (or WARDEN_ROOT_TOKEN), and an example identity.`,
		Example: `  warden serve --dev
  WARDEN_MASTER_KEY=$(openssl rand -base64 32) WARDEN_ROOT_TOKEN=... warden serve --data /var/lib/warden
  warden serve --database postgres://warden@db/warden --config /etc/warden.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Defaults()
			if configFile == "" {
				configFile = c.getenv("WARDEN_CONFIG")
			}
			if configFile != "" {
				if err := cfg.LoadFile(configFile); err != nil {
					return err
				}
			}
			if err := cfg.ApplyEnv(c.getenv); err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("listen") {
				cfg.Listen = flags.Listen
			}
			if fl.Changed("data") {
				cfg.Data = flags.Data
			}
			if fl.Changed("database") {
				cfg.Database = flags.Database
			}
			if fl.Changed("master-key-file") {
				cfg.MasterKeyFile = flags.MasterKeyFile
			}
			if fl.Changed("postgres-listen") {
				cfg.PostgresListen = flags.PostgresListen
			}
			cfg.Dev = flags.Dev
			if cfg.Dev && !fl.Changed("data") && c.getenv("WARDEN_DATA") == "" && cfg.Database == "" {
				dir, err := os.MkdirTemp("", "warden-dev-")
				if err != nil {
					return err
				}
				cfg.Data = dir
			}
			log := newLogger(c, cfg)
			log.Debug("garbage collector", "gogc", server.TuneGC(c.getenv))
			return server.Run(cmd.Context(), server.Options{Config: cfg, Logger: log, Stdout: c.stdout, Getenv: c.getenv})
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file (env WARDEN_CONFIG)")
	f.StringVar(&flags.Listen, "listen", "127.0.0.1:8700", "address to listen on (env WARDEN_LISTEN)")
	f.StringVar(&flags.Data, "data", "./warden-data", "data directory for embedded SQLite (env WARDEN_DATA)")
	f.StringVar(&flags.Database, "database", "", "PostgreSQL URL, postgres://... (env WARDEN_DATABASE); default: SQLite in --data")
	f.StringVar(&flags.MasterKeyFile, "master-key-file", "", "file holding the base64 master key (or set WARDEN_MASTER_KEY)")
	f.StringVar(&flags.PostgresListen, "postgres-listen", "", "PostgreSQL wire listener for database connectors, e.g. 127.0.0.1:5433 (env WARDEN_POSTGRES_LISTEN)")
	f.BoolVar(&flags.Dev, "dev", false, "ready-to-try dev server (generated keys; never for production)")
	return cmd
}

func newLogger(c *cli, cfg config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(c.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(c.stderr, opts))
}
