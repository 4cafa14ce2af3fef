// Package pgwire is Warden's database front: PostgreSQL connectors reached
// through POST /v1/execute (Service.Query) and through a PostgreSQL
// wire-protocol listener (Listener) that ordinary drivers and tools
// connect to. Both translate SQL into gate calls the same way: every
// statement is analysed by internal/sqlguard, each becomes one gate.Check
// (action <connector>:<class>, resource with its tables, writes, has_where,
// functions and fingerprint), one refusal refuses the whole request, and
// only text that was analysed and allowed reaches PostgreSQL, as the
// identity's leased role (or the connector's static basic credential).
package pgwire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"warden"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/sqlguard"
)

// Authenticator verifies an agent's key or access token.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (warden.Principal, error)
}

// Identities resolves an identity by id or name.
type Identities interface {
	Resolve(ctx context.Context, ref string) (*identity.Identity, error)
}

// Credentials resolves the credential serving a connector for an identity
// (a leased role for postgres_dynamic, or a static basic credential).
type Credentials interface {
	Resolve(ctx context.Context, connector, identityID string) (*credential.Material, error)
}

// Connectors looks connectors up by name.
type Connectors interface {
	Get(name string) (*connector.Connector, bool)
}

// Options are the database front's dependencies.
type Options struct {
	Gate        *gate.Gate
	Authn       Authenticator
	Identities  Identities
	Credentials Credentials
	Connectors  Connectors
	// Policies, when set, lets the listener refuse at Parse a statement
	// no arguments could make allowed (the engine's Possible).
	Policies Possible
	Logger   *slog.Logger
	// AnalysisCacheSize bounds the analyses kept by SQL text (default
	// 10,000; drivers send the same texts again and again).
	AnalysisCacheSize int
}

// Service governs SQL on postgres connectors.
type Service struct {
	o     Options
	log   *slog.Logger
	cache analysisCache
	pools poolSet
	// cancelKeys maps the key data the listener gave its clients to their
	// sessions, for CancelRequest.
	cancelKeys sync.Map // uint64 -> *session
}

// New returns the database front.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AnalysisCacheSize <= 0 {
		o.AnalysisCacheSize = 10_000
	}
	s := &Service{o: o, log: o.Logger}
	s.cache.max = o.AnalysisCacheSize
	return s
}

// Close closes the connection pools of the execute front.
func (s *Service) Close() { s.pools.closeAll() }

// analysisCache keeps analyses by exact SQL text. Its bounds (entries,
// and bytes of text) bound memory, not an eviction policy: reaching one
// empties the cache.
type analysisCache struct {
	mu    sync.RWMutex
	m     map[string]*analysis
	max   int
	bytes int
}

// analysis is an analysed SQL text with the part of its statements' gate
// calls that depends on the text alone, built once per text instead of
// once per execution.
type analysis struct {
	*sqlguard.Analysis
	calls []callTemplate // one per statement
}

// callTemplate is statement i's gate resource and path. The resource map
// is shared by every call of the statement and must never be written: the
// gate, the policy engine, approvals and the audit log only read a call's
// resource.
type callTemplate struct {
	res  map[string]any
	path string
}

func newAnalysis(a *sqlguard.Analysis) *analysis {
	out := &analysis{Analysis: a, calls: make([]callTemplate, len(a.Statements))}
	for i := range a.Statements {
		st := &a.Statements[i]
		res := map[string]any{
			"class": string(st.Class), "kind": st.Kind, "fingerprint": st.Fingerprint,
			"tables": strs(st.Tables), "reads": strs(st.Reads), "writes": strs(st.Writes),
			"schemas": strs(st.Schemas), "functions": strs(st.Functions),
			"has_where": st.HasWhere, "statements": len(a.Statements), "statement": i + 1,
		}
		if len(st.Reasons) > 0 {
			res["reasons"] = strs(st.Reasons)
		}
		sum := sha256.Sum256([]byte(st.Text))
		out.calls[i] = callTemplate{res: res, path: "/sql/" + hex.EncodeToString(sum[:16])}
	}
	return out
}

// maxCachedText keeps long texts out of the cache; maxCacheBytes bounds
// the text held in all.
const (
	maxCachedText = 8 << 10
	maxCacheBytes = 16 << 20
)

// analyze returns the (shared, read-only) analysis of sql.
func (s *Service) analyze(sql string) (*analysis, error) {
	c := &s.cache
	c.mu.RLock()
	a, ok := c.m[sql]
	c.mu.RUnlock()
	if ok {
		return a, nil
	}
	sa, err := sqlguard.Analyze(sql)
	if err != nil {
		return nil, err
	}
	a = newAnalysis(sa)
	if len(sql) <= maxCachedText {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= c.max || c.bytes+len(sql) > maxCacheBytes {
			c.m = make(map[string]*analysis)
			c.bytes = 0
		}
		if _, dup := c.m[sql]; !dup {
			c.bytes += len(sql)
		}
		c.m[sql] = a
		c.mu.Unlock()
	}
	return a, nil
}

// meta is what a front knows about the request besides the SQL.
type meta struct {
	ClientIP   string
	UserAgent  string
	RequestID  string
	ApprovalID string
}

// stmtCall is one statement's gate call and verdict.
type stmtCall struct {
	st   *sqlguard.Statement
	call *gate.Call
	v    *gate.Verdict
}

// newCall builds the gate call of statement i of a. The approval binding
// (approval.Fingerprint over action, method, path, resource and params) is
// the statement's fingerprint in resource, the hash of its exact text in
// path and the arguments in params: an approval covers one statement with
// one set of arguments, not a look-alike with other constants.
func newCall(who warden.Principal, c *connector.Connector, a *analysis, i int, args []any, m meta) (*gate.Call, error) {
	st := &a.Statements[i]
	op, ok := c.Operation(string(st.Class))
	if !ok {
		return nil, warden.Errorf(warden.CodeUnknownOperation, "connector %s has no operation %s", c.Name, st.Class)
	}
	t := &a.calls[i]
	res := t.res
	if c.Postgres().AuditText {
		res = maps.Clone(res)
		res["text"] = st.Text
	}
	if args == nil {
		args = []any{}
	}
	return &gate.Call{
		Principal: who, Connector: c, Op: op, Resource: res, Params: map[string]any{"args": args},
		Method: "SQL", Path: t.path,
		ClientIP: m.ClientIP, UserAgent: m.UserAgent, RequestID: m.RequestID, ApprovalID: m.ApprovalID,
		BytesIn: int64(len(st.Text)),
	}, nil
}

func strs(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// decide runs gate.Check for every statement of a, in order, and stops at
// the first refusal. It returns the calls decided so far; refused is the
// index of the refused statement (-1 when all were allowed), whose verdict
// says why. Calls allowed before a refusal must be completed by the
// caller as not run.
func (s *Service) decide(ctx context.Context, who warden.Principal, c *connector.Connector, a *analysis, args []any, m meta) ([]stmtCall, int, error) {
	out := make([]stmtCall, 0, len(a.Statements))
	for i := range a.Statements {
		call, err := newCall(who, c, a, i, args, m)
		if err != nil {
			return out, -1, err
		}
		v := s.o.Gate.Check(ctx, call)
		out = append(out, stmtCall{st: &a.Statements[i], call: call, v: v})
		if v.Err != nil {
			return out, i, nil
		}
	}
	return out, -1, nil
}

// completeTimeout bounds how long recording outcomes may wait for room
// in the audit log's queue.
const completeTimeout = 5 * time.Second

// complete records the outcome of a decided statement: rows returned or
// affected, its fingerprint, class and tables, and the error if it failed.
func (s *Service) complete(ctx context.Context, sc stmtCall, rows int64, bytesOut int64, runErr error) {
	if sc.v == nil || sc.v.Err != nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	s.recordOutcome(cctx, sc, rows, bytesOut, runErr)
}

// recordOutcome is complete under a ctx that already bounds the wait (the
// listener records a session's finished statements under one).
func (s *Service) recordOutcome(ctx context.Context, sc stmtCall, rows int64, bytesOut int64, runErr error) {
	if sc.v == nil || sc.v.Err != nil {
		return
	}
	d := map[string]any{"rows": rows, "fingerprint": sc.st.Fingerprint, "class": string(sc.st.Class), "tables": sc.st.Tables}
	status := 200
	if runErr != nil {
		status = 0
		var pe *pgconn.PgError
		if asPgError(runErr, &pe) {
			d["sqlstate"] = pe.Code
		}
	}
	sc.call.Detail = d
	s.o.Gate.Complete(ctx, sc.v, status, bytesOut, runErr)
}

// loginOf returns the user and password a credential logs in with.
func loginOf(m *credential.Material) (string, warden.Secret, error) {
	if m == nil {
		return "", warden.Secret{}, warden.Errorf(warden.CodeNoCredential, "no credential is configured for this connector and identity")
	}
	user, pw := m.Fields["username"], m.Fields["password"]
	if user.IsZero() || (m.Type != credential.TypePostgresDynamic && m.Type != credential.TypeBasic) {
		return "", warden.Secret{}, warden.Errorf(warden.CodeCredentialUnavailable, "credential %s (type %s) cannot log in to PostgreSQL: use postgres_dynamic or basic", m.Name, m.Type)
	}
	return user.Reveal(), pw, nil
}

// connString names the connector's database in keyword/value form, with
// no credential in it.
func connString(c *connector.Connector) string {
	p := c.Postgres()
	return fmt.Sprintf("host=%s port=%d dbname=%s sslmode=%s connect_timeout=10",
		quoteConnValue(p.Host), p.Port, quoteConnValue(p.Database), p.SSLMode)
}

// applyLogin completes a connection config parsed from connString: the
// credential's role, and the settings Warden keeps fixed for the session,
// sent in the startup packet so that RESET and DISCARD return to them: the
// statement timeout, UTF-8 (the encoding the analysis parsed) and standard
// conforming strings (how the analysis lexed literals). extra holds the
// client's harmless startup settings (application_name, DateStyle, ...).
func applyLogin(cfg *pgconn.Config, c *connector.Connector, m *credential.Material, extra map[string]string) error {
	user, pw, err := loginOf(m)
	if err != nil {
		return err
	}
	cfg.User = user
	cfg.Password = pw.Reveal()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range extra {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.Timeout.Milliseconds(), 10)
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "warden"
	}
	return nil
}

// quoteConnValue quotes a keyword/value connection string value.
func quoteConnValue(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
