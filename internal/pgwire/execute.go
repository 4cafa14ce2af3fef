package pgwire

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"warden"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
	"warden/internal/sqlguard"
)

// Operation is the operation name of POST /v1/execute on a postgres
// connector; the actions decided are the statement classes.
const Operation = "query"

// Result is the answer of a query: one entry per statement, and for
// convenience the columns and rows of the last statement that returned
// rows.
type Result struct {
	Columns    []string          `json:"columns"`
	Rows       [][]any           `json:"rows"`
	Truncated  bool              `json:"truncated,omitempty"`
	Statements []StatementResult `json:"statements"`
}

// StatementResult is one statement's outcome. RowCount is the rows
// returned or affected (from the command tag) whether or not they were
// all included.
type StatementResult struct {
	Class     string   `json:"class"`
	Command   string   `json:"command"`
	Columns   []string `json:"columns,omitempty"`
	Rows      [][]any  `json:"rows,omitempty"`
	RowCount  int64    `json:"row_count"`
	Truncated bool     `json:"truncated,omitempty"`
}

// ExecMeta describes the HTTP request of an execute call.
type ExecMeta struct {
	ClientIP, UserAgent, RequestID, ApprovalID string
}

// Execute runs POST /v1/execute {connector, operation: "query", params:
// {sql, args?}} on a postgres connector. Every statement is decided; one
// refusal refuses the request, and then the returned verdict (with Err set)
// says why (its Pending is set when a human must approve). Other errors are
// *warden.Error: invalid SQL or params, credential and upstream failures.
// Statements run in one transaction (all or nothing) as the credential's
// role, under the connector's statement timeout; at most the connector's
// max_rows rows are returned in all.
func (s *Service) Execute(ctx context.Context, who warden.Principal, c *connector.Connector, operation string, params map[string]any, m ExecMeta) (*Result, *gate.Verdict, error) {
	if operation != Operation {
		return nil, nil, warden.Errorf(warden.CodeUnknownOperation, "connector %s runs SQL: use operation %q (the classes %v are what policies name)", c.Name, Operation, connector.PostgresClasses)
	}
	sql, args, err := queryParams(params)
	if err != nil {
		return nil, nil, err
	}
	a, err := s.analyze(sql)
	if err != nil {
		return nil, nil, err
	}
	if err := executable(a, args); err != nil {
		return nil, nil, err
	}
	calls, refused, err := s.decide(ctx, who, c, a, args, metaOf(m))
	if err != nil || refused >= 0 {
		s.notRun(ctx, calls, refused)
		if err != nil {
			return nil, nil, err
		}
		return nil, calls[refused].v, calls[refused].v.Err
	}
	res, err := s.run(ctx, c, who.ID, calls, args)
	if err != nil {
		return nil, nil, err
	}
	return res, nil, nil
}

func metaOf(m ExecMeta) meta { return meta(m) }

// ExecuteSQL is Execute for the HTTP front (proxy.SQLExecutor): base
// carries who is calling and from where.
func (s *Service) ExecuteSQL(ctx context.Context, base gate.Call, c *connector.Connector, operation string, params map[string]any) (any, *gate.Verdict, error) {
	res, v, err := s.Execute(ctx, base.Principal, c, operation, params, ExecMeta{ClientIP: base.ClientIP, UserAgent: base.UserAgent, RequestID: base.RequestID, ApprovalID: base.ApprovalID})
	if res == nil {
		return nil, v, err
	}
	return res, v, err
}

// notRun completes the statements allowed before a refusal: they were
// decided (and counted) but never sent.
func (s *Service) notRun(ctx context.Context, calls []stmtCall, refused int) {
	for i, sc := range calls {
		if i == refused {
			continue
		}
		reason := errors.New("not run: another statement of the request was refused")
		if refused < 0 {
			reason = errors.New("not run: the request failed before it reached the database")
		}
		s.complete(ctx, sc, 0, 0, reason)
	}
}

// queryParams reads params {sql, args?}; anything else is refused.
func queryParams(p map[string]any) (string, []any, error) {
	for k := range p {
		if k != "sql" && k != "args" {
			return "", nil, warden.FieldError("params."+k, "is not a parameter of %s (sql, args)", Operation)
		}
	}
	sql, ok := p["sql"].(string)
	if !ok || sql == "" {
		return "", nil, warden.FieldError("params.sql", "is required: the SQL to run")
	}
	var args []any
	switch v := p["args"].(type) {
	case nil:
	case []any:
		args = v
		for i, x := range v {
			switch x.(type) {
			case nil, string, bool, float64, int64, int, json.Number:
			default:
				return "", nil, warden.FieldError(fmt.Sprintf("params.args[%d]", i), "must be a string, number, boolean or null")
			}
		}
	default:
		return "", nil, warden.FieldError("params.args", "must be a list of values for $1, $2, ...")
	}
	return sql, args, nil
}

// executable refuses what the execute front cannot run faithfully:
// arguments with several statements, missing arguments, transaction
// control (each request is one transaction already) and COPY (there is no
// stream to copy to or from).
func executable(a *analysis, args []any) error {
	if len(args) > 0 && len(a.Statements) > 1 {
		return warden.FieldError("params.args", "can only be used with a single statement")
	}
	for i, st := range a.Statements {
		switch st.Kind {
		case "TransactionStmt":
			return warden.FieldError("params.sql", "statement %d: each request runs in one transaction already; use the wire listener for transaction control", i+1)
		case "CopyStmt":
			if st.Class != sqlguard.Admin {
				return warden.FieldError("params.sql", "statement %d: COPY needs a stream; use the wire listener", i+1)
			}
		}
		if st.Params > len(args) {
			return warden.FieldError("params.args", "statement %d uses $%d but %d argument(s) were given", i+1, st.Params, len(args))
		}
	}
	return nil
}

// run executes the decided statements and completes each in the audit log.
func (s *Service) run(ctx context.Context, c *connector.Connector, identityID string, calls []stmtCall, args []any) (*Result, error) {
	mat := calls[len(calls)-1].v.Credential
	pool, err := s.pools.get(ctx, c, identityID, mat)
	if err != nil {
		s.notRun(ctx, calls, -1)
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, c.Timeout+5*time.Second)
	defer cancel()
	conn, err := pool.Acquire(qctx)
	if err != nil {
		s.notRun(ctx, calls, -1)
		return nil, warden.Wrap(safeErr(err), warden.CodeUpstreamUnavailable, "cannot connect to the database of connector "+c.Name)
	}
	defer conn.Release()
	var tx pgx.Tx
	if len(calls) > 1 {
		if tx, err = conn.Begin(qctx); err != nil {
			s.notRun(ctx, calls, -1)
			return nil, warden.Wrap(safeErr(err), warden.CodeUpstreamUnavailable, "cannot begin a transaction")
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	}
	budget := c.Postgres().MaxRows
	res := &Result{Columns: []string{}, Rows: [][]any{}, Statements: make([]StatementResult, 0, len(calls))}
	started := time.Now()
	for i, sc := range calls {
		sr, err := runOne(qctx, conn.Conn(), sc.st, args, &budget)
		if err != nil {
			for j := i; j < len(calls); j++ {
				if j == i {
					s.complete(ctx, calls[j], 0, 0, err)
				} else {
					s.complete(ctx, calls[j], 0, 0, errors.New("not run: an earlier statement failed"))
				}
			}
			for j := 0; j < i; j++ {
				s.complete(ctx, calls[j], res.Statements[j].RowCount, 0, errors.New("rolled back: a later statement failed"))
			}
			return nil, queryError(err, i, len(calls), time.Since(started), c.Timeout)
		}
		res.Statements = append(res.Statements, *sr)
		if sr.Columns != nil {
			res.Columns, res.Rows, res.Truncated = sr.Columns, sr.Rows, sr.Truncated
		}
	}
	if tx != nil {
		if err := tx.Commit(qctx); err != nil {
			for j := range calls {
				s.complete(ctx, calls[j], 0, 0, errors.New("commit failed"))
			}
			return nil, queryError(err, len(calls)-1, len(calls), time.Since(started), c.Timeout)
		}
	}
	for j := range calls {
		s.complete(ctx, calls[j], res.Statements[j].RowCount, 0, nil)
	}
	return res, nil
}

// runOne runs one statement with the extended protocol (the text is sent
// exactly as analysed; arguments travel separately), keeping at most
// *budget rows.
func runOne(ctx context.Context, conn *pgx.Conn, st *sqlguard.Statement, args []any, budget *int) (*StatementResult, error) {
	qargs := make([]any, 0, len(args)+1)
	qargs = append(qargs, pgx.QueryExecModeDescribeExec)
	for _, a := range args {
		qargs = append(qargs, argValue(a))
	}
	rows, err := conn.Query(ctx, st.Text, qargs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	sr := &StatementResult{Class: string(st.Class)}
	fds := rows.FieldDescriptions()
	if len(fds) > 0 {
		sr.Columns = make([]string, len(fds))
		for i, fd := range fds {
			sr.Columns[i] = fd.Name
		}
		sr.Rows = [][]any{}
	}
	for rows.Next() {
		if *budget <= 0 {
			sr.Truncated = true
			continue
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			vals[i] = jsonValue(v)
		}
		sr.Rows = append(sr.Rows, vals)
		*budget--
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	tag := rows.CommandTag()
	sr.Command = tag.String()
	sr.RowCount = tag.RowsAffected()
	return sr, nil
}

// argValue turns a JSON argument into what pgx encodes for the parameter
// type PostgreSQL described: whole numbers as integers.
func argValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return v
}

// jsonValue makes a decoded column value JSON-friendly: UUIDs as text,
// bytes as hex (\x...), numerics and intervals in PostgreSQL's text form.
func jsonValue(v any) any {
	switch x := v.(type) {
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case pgtype.Numeric:
		if b, err := x.MarshalJSON(); err == nil {
			return json.RawMessage(b)
		}
		return nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Sprint(x)
		}
	case map[string]any, []any, string, bool, int64, int32, int16, int, nil, time.Time:
		return v
	case fmt.Stringer:
		return x.String()
	}
	if _, err := json.Marshal(v); err != nil {
		return fmt.Sprint(v)
	}
	return v
}

// queryError turns a database error into a *warden.Error the caller may
// see: PostgreSQL's own message and SQLSTATE (the agent's SQL failed), or
// a generic upstream failure (never a connection string).
func queryError(err error, i, n int, took, timeout time.Duration) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		where := ""
		if n > 1 {
			where = fmt.Sprintf("statement %d: ", i+1)
		}
		code := warden.CodeInvalid
		if pe.Code == "42501" {
			code = warden.CodeForbidden
		}
		if pe.Code == "57014" && took >= timeout {
			code = warden.CodeUpstreamUnavailable
		}
		return &warden.Error{Code: code, Field: "params.sql", Message: fmt.Sprintf("%sthe database refused it: %s (SQLSTATE %s)", where, pe.Message, pe.Code), Err: err}
	}
	return warden.Wrap(safeErr(err), warden.CodeUpstreamUnavailable, "the database did not answer")
}

// safeErr drops connection detail from driver errors.
func safeErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("postgresql: %s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errors.New("postgresql: timed out")
	}
	return errors.New("postgresql: connection failed")
}

func asPgError(err error, pe **pgconn.PgError) bool { return errors.As(err, pe) }

// poolSet keeps one small pool per (connector, identity), logged in as the
// identity's current credential; a new lease or credential version
// replaces the pool.
type poolSet struct {
	mu sync.Mutex
	m  map[string]*poolEntry
}

type poolEntry struct {
	login string // credential id, version and user
	pool  *pgxpool.Pool
}

// maxPoolsPerSet bounds open pools; reaching it closes them all.
const maxPoolsPerSet = 1000

func (ps *poolSet) get(ctx context.Context, c *connector.Connector, identityID string, m *credential.Material) (*pgxpool.Pool, error) {
	user, _, err := loginOf(m)
	if err != nil {
		return nil, err
	}
	key := c.Name + "\x00" + identityID
	login := fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s", m.CredentialID, m.Version, user, c.Base.String(), c.Timeout)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e, ok := ps.m[key]; ok {
		if e.login == login {
			return e.pool, nil
		}
		e.pool.Close()
		delete(ps.m, key)
	}
	cfg, err := pgxpool.ParseConfig(connString(c))
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInvalid, "connector "+c.Name+": the database address does not parse")
	}
	if err := applyLogin(&cfg.ConnConfig.Config, c, m, nil); err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	cfg.MaxConnIdleTime = time.Minute
	if !m.ExpiresAt.IsZero() {
		// A leased role's sessions end when the lease is dropped.
		cfg.MaxConnLifetime = max(time.Until(m.ExpiresAt), time.Second)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	pool, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return nil, warden.Wrap(safeErr(err), warden.CodeUpstreamUnavailable, "cannot connect to the database of connector "+c.Name)
	}
	if ps.m == nil || len(ps.m) >= maxPoolsPerSet {
		for _, e := range ps.m {
			e.pool.Close()
		}
		ps.m = map[string]*poolEntry{}
	}
	ps.m[key] = &poolEntry{login: login, pool: pool}
	return pool, nil
}

func (ps *poolSet) closeAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, e := range ps.m {
		e.pool.Close()
	}
	ps.m = nil
}
