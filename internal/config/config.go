// Package config loads the server's configuration: defaults, then a YAML
// file (unknown keys are errors), then WARDEN_* environment variables, then
// command-line flags; later sources win. Validate says exactly what is wrong
// or missing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"warden"
	"warden/internal/auditsink"
)

// Config is the server's configuration.
type Config struct {
	Listen         string        `yaml:"listen"`
	Data           string        `yaml:"data"`
	Database       string        `yaml:"database"`
	MasterKeyFile  string        `yaml:"master_key_file"`
	RootToken      warden.Secret `yaml:"-"`
	RootTokenValue string        `yaml:"root_token"` // read from the file, moved into RootToken
	TokenTTL       time.Duration `yaml:"token_ttl"`
	Audience       string        `yaml:"audience"`
	MaxBodyBytes   int64         `yaml:"max_body_bytes"`
	LogLevel       string        `yaml:"log_level"`
	LogFormat      string        `yaml:"log_format"`
	ShutdownGrace  time.Duration `yaml:"shutdown_grace"`
	Dev            bool          `yaml:"-"`

	// PublicURL is how humans reach this server (links in notifications).
	PublicURL string `yaml:"public_url"`
	// ApprovalTTL is how long an approval request waits (default 1h).
	ApprovalTTL time.Duration `yaml:"approval_ttl"`
	// MaxElevation caps a just-in-time grant (default 8h).
	MaxElevation time.Duration `yaml:"max_elevation"`
	// ApprovalWebhookURL receives a signed, Slack-compatible message per
	// approval request; ApprovalWebhookSecret signs it (env only is best).
	ApprovalWebhookURL    string        `yaml:"approval_webhook_url"`
	ApprovalWebhookSecret warden.Secret `yaml:"-"`

	// Monitor configures behavioural monitoring and the circuit breaker
	// (docs/monitor.md).
	Monitor Monitor `yaml:"monitor"`

	// PostgresListen is the PostgreSQL wire listener's address (empty:
	// none); PostgresTLSCert and PostgresTLSKey (PEM files) make it offer
	// and require TLS.
	PostgresListen  string `yaml:"postgres_listen"`
	PostgresTLSCert string `yaml:"postgres_tls_cert"`
	PostgresTLSKey  string `yaml:"postgres_tls_key"`
	// PostgresWriteTimeout is how long a write to a wire client may block
	// before the client is disconnected (default 30s).
	PostgresWriteTimeout time.Duration `yaml:"postgres_write_timeout"`

	// AuditSinks stream the audit chain to outside systems (a SIEM's HTTP
	// collector, syslog); docs/audit-sinks.md.
	AuditSinks []AuditSink `yaml:"audit_sinks"`

	// AuditRetention archives old audit events to files and removes them
	// from the database, keeping the chain verifiable across the cut
	// (docs/audit-retention.md). Off unless Keep is set.
	AuditRetention AuditRetention `yaml:"audit_retention"`

	// MasterKey is filled by the server from WARDEN_MASTER_KEY or the key
	// file; never from the YAML file.
	MasterKey []byte `yaml:"-"`
}

// AuditSink is one streaming audit sink (docs/audit-sinks.md). Zero values
// take the sink's defaults.
type AuditSink struct {
	// Name keys the sink's cursor in the database: lowercase letters,
	// digits and '-', unique. Renaming a sink starts it from the oldest event.
	Name string `yaml:"name"`
	// Type is webhook or syslog.
	Type string `yaml:"type"`
	// Format is jsonl (default; the event as export writes it) or ocsf.
	Format string `yaml:"format"`
	// Kinds, when set, selects the event kinds sent.
	Kinds []string `yaml:"kinds"`
	// URL (webhook) receives batches as JSON Lines.
	URL string `yaml:"url"`
	// SecretEnv (webhook) names the environment variable holding the HMAC
	// signing secret; the secret itself never goes in the file.
	SecretEnv string `yaml:"secret_env"`
	// AuthorizationEnv (webhook) names the environment variable holding the
	// Authorization header's value (e.g. "Splunk <HEC token>").
	AuthorizationEnv string `yaml:"authorization_env"`
	// Network (syslog) is udp, tcp or tls; Address is host:port.
	Network string `yaml:"network"`
	Address string `yaml:"address"`
	// Hostname (syslog) is the HOSTNAME header field (default: the host's).
	Hostname string `yaml:"hostname"`
	// CAFile (PEM) replaces the system roots for https and tls receivers.
	CAFile string `yaml:"ca_file"`
	// BatchSize (default 500, at most 1000), FlushInterval (how often a
	// caught-up sink looks for new events, default 1s), Timeout (one
	// delivery, default 10s), MaxBackoff (between retries, default 1m).
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	Timeout       time.Duration `yaml:"timeout"`
	MaxBackoff    time.Duration `yaml:"max_backoff"`
	// MaxLag is how many events behind the sink may fall before Warden
	// warns (default 10000).
	MaxLag int64 `yaml:"max_lag"`
}

// Monitor is the behaviour monitor's configuration. The monitor validates
// it at start and names the offending key.
type Monitor struct {
	// Disabled turns monitoring off (no findings, no breaker).
	Disabled bool `yaml:"disabled"`
	// An identity alerts only after LearningCalls calls and LearningPeriod
	// since its first call (both must pass).
	LearningCalls  int           `yaml:"learning_calls"`
	LearningPeriod time.Duration `yaml:"learning_period"`
	// SpikeFloor is the fewest calls of one operation per minute that can
	// count as a rate spike.
	SpikeFloor int `yaml:"spike_floor"`
	// Responses maps a severity (info, low, medium, high, critical) to
	// alert, throttle or suspend. Missing severities keep the defaults
	// (high: throttle, critical: suspend, others: alert).
	Responses map[string]string `yaml:"responses"`
	// A throttled identity gets ThrottleRate calls per second (burst
	// ThrottleBurst) for ThrottleFor.
	ThrottleRate  float64       `yaml:"throttle_rate"`
	ThrottleBurst int           `yaml:"throttle_burst"`
	ThrottleFor   time.Duration `yaml:"throttle_for"`
	// QueueSize bounds the observation queue (default 65536).
	QueueSize int `yaml:"queue_size"`
	// WebhookURL receives a signed, Slack-compatible alert per finding at
	// or above WebhookMinSeverity (default low); WebhookSecret signs it
	// (WARDEN_MONITOR_WEBHOOK_SECRET).
	WebhookURL         string        `yaml:"webhook_url"`
	WebhookMinSeverity string        `yaml:"webhook_min_severity"`
	WebhookSecret      warden.Secret `yaml:"-"`
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	return Config{
		Listen:        "127.0.0.1:8700",
		Data:          "./warden-data",
		TokenTTL:      15 * time.Minute,
		Audience:      "warden",
		MaxBodyBytes:  1 << 20,
		LogLevel:      "info",
		LogFormat:     "text",
		ShutdownGrace: 20 * time.Second,
		ApprovalTTL:   time.Hour,
		MaxElevation:  8 * time.Hour,
		Monitor:       Monitor{LearningCalls: 100, LearningPeriod: 24 * time.Hour},
	}
}

// maxFile bounds the config file size.
const maxFile = 1 << 20

// LoadFile merges a YAML file into c. Unknown keys, a second document or a
// file over 1 MiB are errors naming the file.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxFile {
		return fmt.Errorf("config file %s: larger than 1 MiB", path)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: only one YAML document is allowed", path)
	}
	if c.RootTokenValue != "" {
		c.RootToken = warden.NewSecret(c.RootTokenValue)
		c.RootTokenValue = ""
	}
	return nil
}

// ApplyEnv merges WARDEN_* variables into c.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	set := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set("WARDEN_LISTEN", &c.Listen)
	set("WARDEN_DATA", &c.Data)
	set("WARDEN_DATABASE", &c.Database)
	set("WARDEN_MASTER_KEY_FILE", &c.MasterKeyFile)
	set("WARDEN_AUDIENCE", &c.Audience)
	set("WARDEN_LOG_LEVEL", &c.LogLevel)
	set("WARDEN_LOG_FORMAT", &c.LogFormat)
	set("WARDEN_PUBLIC_URL", &c.PublicURL)
	set("WARDEN_APPROVAL_WEBHOOK_URL", &c.ApprovalWebhookURL)
	set("WARDEN_POSTGRES_LISTEN", &c.PostgresListen)
	set("WARDEN_POSTGRES_TLS_CERT", &c.PostgresTLSCert)
	set("WARDEN_POSTGRES_TLS_KEY", &c.PostgresTLSKey)
	if v := getenv("WARDEN_APPROVAL_WEBHOOK_SECRET"); v != "" {
		c.ApprovalWebhookSecret = warden.NewSecret(v)
	}
	set("WARDEN_MONITOR_WEBHOOK_URL", &c.Monitor.WebhookURL)
	if v := getenv("WARDEN_MONITOR_WEBHOOK_SECRET"); v != "" {
		c.Monitor.WebhookSecret = warden.NewSecret(v)
	}
	if v := getenv("WARDEN_ROOT_TOKEN"); v != "" {
		c.RootToken = warden.NewSecret(v)
	}
	if v := getenv("WARDEN_TOKEN_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("WARDEN_TOKEN_TTL: %w", err)
		}
		c.TokenTTL = d
	}
	return nil
}

// Validate checks the configuration. It does not check the master key or
// the root token, which the server resolves (dev mode generates them).
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: must be host:port (e.g. 127.0.0.1:8700)", c.Listen)
	}
	if c.Database == "" && c.Data == "" {
		return errors.New("data: a data directory is required when no database is given")
	}
	if c.Database != "" && !(len(c.Database) > 11 && (c.Database[:11] == "postgres://" || (len(c.Database) > 13 && c.Database[:13] == "postgresql://"))) {
		return errors.New("database: must be a postgres:// or postgresql:// URL (omit it to use embedded SQLite in --data)")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return fmt.Errorf("token_ttl %s: must be between 1m and 24h", c.TokenTTL)
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
		return fmt.Errorf("max_body_bytes %d: must be between 1 KiB and 64 MiB", c.MaxBodyBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format %q: must be text or json", c.LogFormat)
	}
	if c.ApprovalTTL < time.Minute || c.ApprovalTTL > 7*24*time.Hour {
		return fmt.Errorf("approval_ttl %s: must be between 1m and 168h", c.ApprovalTTL)
	}
	if c.ApprovalWebhookURL != "" {
		if u, err := url.Parse(c.ApprovalWebhookURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("approval_webhook_url: must be an http(s) URL")
		}
	}
	if c.PostgresListen != "" {
		if _, _, err := net.SplitHostPort(c.PostgresListen); err != nil {
			return fmt.Errorf("postgres_listen %q: must be host:port (e.g. 127.0.0.1:5433)", c.PostgresListen)
		}
	}
	if (c.PostgresTLSCert == "") != (c.PostgresTLSKey == "") {
		return errors.New("postgres_tls_cert and postgres_tls_key: give both or neither")
	}
	if c.PostgresTLSCert != "" && c.PostgresListen == "" {
		return errors.New("postgres_tls_cert: set postgres_listen too (the TLS certificate is for the PostgreSQL listener)")
	}
	if r := c.RootToken.Reveal(); r != "" && len(r) < 16 {
		return errors.New("root token: must be at least 16 characters (WARDEN_ROOT_TOKEN)")
	}
	if err := c.AuditRetention.validate(); err != nil {
		return err
	}
	return validateAuditSinks(c.AuditSinks)
}

// AuditRetention configures periodic audit retention.
type AuditRetention struct {
	// Keep is how long events stay in the database (e.g. 2160h for 90
	// days); 0 turns retention off. Events older than that, up to a signed
	// checkpoint, move to an archive file.
	Keep time.Duration `yaml:"keep"`
	// Dir receives the archive files (default <data>/audit-archive).
	Dir string `yaml:"dir"`
	// Every is how often retention runs (default 1h).
	Every time.Duration `yaml:"every"`
	// MaxEvents bounds one run's cut so the database's write lock is held
	// briefly (default 100000); a backlog is worked off over several runs.
	MaxEvents int64 `yaml:"max_events"`
}

func (r AuditRetention) validate() error {
	switch {
	case r.Keep < 0:
		return errors.New("audit_retention.keep: must not be negative")
	case r.Keep == 0 && (r.Dir != "" || r.Every != 0 || r.MaxEvents != 0):
		return errors.New("audit_retention: set keep (how long events stay in the database) to turn retention on")
	case r.Keep > 0 && r.Keep < time.Hour:
		return errors.New("audit_retention.keep: at least 1h (events are archived up to a signed checkpoint, made every 30s or 10,000 events)")
	case r.Every < 0 || (r.Every > 0 && r.Every < time.Minute):
		return errors.New("audit_retention.every: at least 1m")
	case r.MaxEvents < 0:
		return errors.New("audit_retention.max_events: must not be negative")
	}
	return nil
}

// envName is a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Sink is the sink's configuration for internal/auditsink, without its
// secrets (the server reads those from the environment variables named).
func (s AuditSink) Sink() auditsink.Config {
	return auditsink.Config{
		Name: s.Name, Type: s.Type, Format: s.Format, Kinds: s.Kinds,
		URL: s.URL, Network: s.Network, Address: s.Address, Hostname: s.Hostname, CAFile: s.CAFile,
		BatchSize: s.BatchSize, PollInterval: s.FlushInterval, Timeout: s.Timeout, MaxBackoff: s.MaxBackoff, MaxLag: s.MaxLag,
	}
}

// validateAuditSinks checks what only the file can get wrong (duplicate
// names, keys of the other sink type, secrets given other than by variable
// name, negative durations); the sink's own rules are auditsink's.
func validateAuditSinks(sinks []AuditSink) error {
	seen := map[string]bool{}
	for i, s := range sinks {
		at := fmt.Sprintf("audit_sinks[%d] (%s)", i, s.Name)
		sc := s.Sink()
		if err := sc.Validate(); err != nil {
			return fmt.Errorf("%s.%w", at, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("%s: the name is used by another sink", at)
		}
		seen[s.Name] = true
		switch s.Type {
		case auditsink.TypeWebhook:
			if s.Network != "" || s.Address != "" || s.Hostname != "" {
				return fmt.Errorf("%s: network, address and hostname are for syslog sinks", at)
			}
			if s.SecretEnv != "" && !envName.MatchString(s.SecretEnv) {
				return fmt.Errorf("%s.secret_env: must name an environment variable (the secret itself never goes in the file)", at)
			}
			if s.AuthorizationEnv != "" && !envName.MatchString(s.AuthorizationEnv) {
				return fmt.Errorf("%s.authorization_env: must name an environment variable (the credential itself never goes in the file)", at)
			}
		case auditsink.TypeSyslog:
			if s.URL != "" || s.SecretEnv != "" || s.AuthorizationEnv != "" {
				return fmt.Errorf("%s: url, secret_env and authorization_env are for webhook sinks", at)
			}
		}
		if s.FlushInterval < 0 || s.Timeout < 0 || s.MaxBackoff < 0 || s.MaxLag < 0 {
			return fmt.Errorf("%s: flush_interval, timeout, max_backoff and max_lag must not be negative", at)
		}
	}
	return nil
}
