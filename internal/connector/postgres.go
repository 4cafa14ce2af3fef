package connector

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"warden"
)

// TypePostgres is the connector type of a PostgreSQL database governed
// statement by statement (see internal/pgwire and internal/sqlguard).
const TypePostgres = "postgres"

// PostgresClasses are the operations of every postgres connector, in order
// of power: the statement classes of internal/sqlguard. Policies name them
// as actions ("crm-db:select", "crm-db:delete").
var PostgresClasses = []string{"select", "insert", "update", "delete", "ddl", "admin"}

// postgresOpClass maps a statement class onto the coarse operation class
// policies see as action.class (read | write | delete | admin).
var postgresOpClass = map[string]string{
	"select": "read", "insert": "write", "update": "write", "delete": "delete", "ddl": "admin", "admin": "admin",
}

// Bounds and defaults of a postgres connector.
const (
	DefaultPostgresPort     = 5432
	DefaultMaxRows          = 1000
	MaxMaxRows              = 100_000
	DefaultStatementTimeout = 30 * time.Second
)

// PostgresSpec is the postgres part of a `type: postgres` connector: the
// database Warden connects to as the identity's leased role (or a static
// basic credential), and the bounds it puts on every statement.
type PostgresSpec struct {
	Host     string `json:"host" yaml:"host"`
	Port     int    `json:"port,omitempty" yaml:"port,omitempty"`
	Database string `json:"database" yaml:"database"`
	// SSLMode is libpq's: disable, allow, prefer, require, verify-ca or
	// verify-full (default verify-full: a database connection carries data
	// and the leased role's password).
	SSLMode string `json:"sslmode,omitempty" yaml:"sslmode,omitempty"`
	// MaxRows caps the rows POST /v1/execute returns per request (default
	// 1000); the rest are dropped and the answer says it was truncated.
	MaxRows int `json:"max_rows,omitempty" yaml:"max_rows,omitempty"`
	// StatementTimeout is PostgreSQL's statement_timeout for every
	// statement (default 30s, at most 1h); agents cannot SET it.
	StatementTimeout string `json:"statement_timeout,omitempty" yaml:"statement_timeout,omitempty"`
	// AuditText records each statement's full text in the audit log (in
	// the decided event's resource); off by default, when only the
	// normalised fingerprint (constants stripped) is kept.
	AuditText bool `json:"audit_text,omitempty" yaml:"audit_text,omitempty"`
}

// pgHostRE accepts host names and IPv4/IPv6 addresses (TCP only: Warden
// does not connect over Unix sockets).
var pgHostRE = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

var sslModes = map[string]bool{"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true}

// IsPostgres reports whether c is a postgres connector.
func (c *Connector) IsPostgres() bool { return c.Doc.Type == TypePostgres }

// Postgres returns the compiled postgres settings (defaults filled in), or
// nil for other connector types.
func (c *Connector) Postgres() *PostgresSpec {
	if !c.IsPostgres() {
		return nil
	}
	return c.Doc.Postgres
}

// Addr is the database's host:port.
func (p *PostgresSpec) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// compilePostgres compiles a type: postgres connector. Its operations are
// the statement classes; the document lists none, and Operations() lists
// none either: they are not HTTP requests or tools, only what policies
// name (Operation still finds them for the gate). Its auth is decided by
// the credential bound to it (postgres_dynamic or basic): Doc.Auth is set
// to "credential" so the gate resolves one for every allowed statement.
func compilePostgres(d *Document) (*Connector, error) {
	p := d.Postgres
	if p == nil {
		return nil, warden.FieldError("postgres", "a connector of type postgres needs postgres: {host, port, database, sslmode}")
	}
	if d.FromCatalog != "" {
		return nil, warden.FieldError("from_catalog", "is not available for postgres connectors")
	}
	if d.BaseURL != "" {
		return nil, warden.FieldError("base_url", "postgres connectors name their database in postgres.host, port and database")
	}
	if len(d.Operations) > 0 {
		return nil, warden.FieldError("operations", "the operations of a postgres connector are the statement classes (select, insert, update, delete, ddl, admin); list none")
	}
	if d.Auth != nil && d.Auth.Type != "credential" {
		return nil, warden.FieldError("auth", "a postgres connector authenticates with the credential bound to it (postgres_dynamic or basic); omit auth")
	}
	if d.MaxRequestBytes != 0 || d.MaxResponseBytes != 0 || d.Timeout != "" {
		return nil, warden.FieldError("timeout", "postgres connectors take their bounds from postgres.statement_timeout and postgres.max_rows")
	}
	if p.Host == "" || len(p.Host) > 255 || !pgHostRE.MatchString(p.Host) {
		return nil, warden.FieldError("postgres.host", "must be a host name or IP address")
	}
	if p.Port == 0 {
		p.Port = DefaultPostgresPort
	}
	if p.Port < 1 || p.Port > 65535 {
		return nil, warden.FieldError("postgres.port", "must be between 1 and 65535")
	}
	if p.Database == "" || len(p.Database) > 63 {
		return nil, warden.FieldError("postgres.database", "is required (at most 63 bytes)")
	}
	if p.SSLMode == "" {
		p.SSLMode = "verify-full"
	}
	if !sslModes[p.SSLMode] {
		return nil, warden.FieldError("postgres.sslmode", "must be disable, allow, prefer, require, verify-ca or verify-full")
	}
	if p.MaxRows == 0 {
		p.MaxRows = DefaultMaxRows
	}
	if p.MaxRows < 1 || p.MaxRows > MaxMaxRows {
		return nil, warden.FieldError("postgres.max_rows", "must be between 1 and %d", MaxMaxRows)
	}
	timeout := DefaultStatementTimeout
	if p.StatementTimeout != "" {
		var err error
		if timeout, err = time.ParseDuration(p.StatementTimeout); err != nil || timeout < time.Millisecond || timeout > time.Hour {
			return nil, warden.FieldError("postgres.statement_timeout", "must be a duration between 1ms and 1h, e.g. \"30s\"")
		}
	}
	d.Auth = &Auth{Type: "credential"}
	c := &Connector{
		Doc: d, Name: d.Name, Timeout: timeout, MaxRequest: 1 << 20, MaxResp: 64 << 20, ops: map[string]*Op{}, router: newRouter(),
		Base: &url.URL{Scheme: "postgres", Host: p.Addr(), Path: "/" + p.Database},
	}
	for _, cl := range PostgresClasses {
		op := &Op{Operation: Operation{ID: cl, Method: "SQL", Class: postgresOpClass[cl]}, Action: d.Name + ":" + cl}
		c.ops[cl] = op
	}
	return c, nil
}
