package pgwire

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"warden"
	"warden/internal/sqlguard"
)

// stmtState is a statement prepared through this session (Parse): the
// text the database holds under its name is exactly the text analysed
// here. A nil analysis is the empty statement.
type stmtState struct {
	a *analysis
}

// portalState is a bound portal: its statement and arguments (as text,
// or \x-hex for binary ones), decided at every Execute.
type portalState struct {
	stmt *stmtState
	args []any
}

type expectKind int

const (
	expParse expectKind = iota
	expBind
	expDescribeStmt
	expDescribePortal
	expExecute
	expClose
	expSync
	expPoison
)

// poisonSQL is what Warden sends the database in place of a refused
// message: it fails to parse, so the database fails the transaction (or
// the batch's implicit one) exactly as PostgreSQL would have failed it for
// the client's own error, and skips the rest of the batch. Its error is
// replaced by Warden's refusal.
const poisonSQL = "warden refused this statement"

// expect is a message forwarded upstream whose answer has not been
// relayed yet. Answers come back in order, so the listener can place its
// own errors exactly where PostgreSQL would.
type expect struct {
	kind expectKind
	name string    // statement or portal created (Parse, Bind)
	call *stmtCall // the decided statement (Execute)
	rows int64
	// refusal replaces the database's answer to the poison (expPoison).
	refusal *pgproto3.ErrorResponse
}

// handle serves one client message.
func (ss *session) handle(ctx context.Context, msg pgproto3.FrontendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.Query:
		return ss.query(ctx, m.String)
	case *pgproto3.Parse:
		return ss.parse(ctx, m)
	case *pgproto3.Bind:
		return ss.bind(m)
	case *pgproto3.Describe:
		return ss.describe(m)
	case *pgproto3.Execute:
		return ss.execute(ctx, m)
	case *pgproto3.Close:
		return ss.closeMsg(m)
	case *pgproto3.Sync:
		ss.fe.Send(&pgproto3.Sync{})
		ss.pending = append(ss.pending, expect{kind: expSync})
		err := ss.drain()
		ss.discard = false
		return err
	case *pgproto3.Flush:
		return ss.drain()
	case *pgproto3.Terminate:
		return errTerminate
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		// Outside COPY (e.g. after a refused COPY): ignored, as PostgreSQL does.
		return nil
	case *pgproto3.FunctionCall:
		// The fast-path interface calls functions by OID, past any SQL
		// analysis (lo_export among them).
		return ss.simpleError(errResp(stateInsufficientPrivilege, "warden: function calls through the fast-path interface are not allowed; call functions in SQL", ""))
	default:
		ss.fatal(stateProtocolViolation, fmt.Sprintf("unexpected message %T", msg))
		return errTerminate
	}
}

// meta describes the next decision. An approval id set with SET
// warden.approval applies to the next statement decided only.
func (ss *session) meta() meta {
	m := meta{ClientIP: ss.clientIP, UserAgent: "pgwire", ApprovalID: ss.approvalID}
	ss.approvalID = ""
	return m
}

// approvalSetting is the session setting through which a wire client
// presents an approval: SET warden.approval = 'apr_...' (served by
// Warden, never sent to the database).
const approvalSetting = "warden.approval"

func errResp(code, msg, detail string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg, Detail: detail}
}

// analysisError is the answer to SQL Warden could not analyse.
func analysisError(err error) *pgproto3.ErrorResponse {
	code := stateSyntaxError
	if warden.IsCode(err, warden.CodeTooLarge) {
		code = stateProgramLimitExceeded
	}
	return errResp(code, "warden: refused: "+clip(err.Error()), "Warden runs only SQL that PostgreSQL's parser accepts and it could analyse.")
}

// denial is the answer to a refused statement: 42501 with Warden's
// reason; the detail names the action, the statement and the rule.
func denial(sc stmtCall, n int) *pgproto3.ErrorResponse {
	v := sc.v
	code := warden.ErrorCode(v.Err)
	msg := v.Err.Error()
	var we *warden.Error
	if errors.As(v.Err, &we) {
		msg = we.Message
	}
	state := stateInsufficientPrivilege
	switch code {
	case warden.CodeAuditUnavailable, warden.CodeUnavailable, warden.CodeCredentialUnavailable, warden.CodeInternal:
		state = stateSystemError
	}
	detail := fmt.Sprintf("action %s, statement %d of %d, code %s", sc.call.Op.Action, sc.call.Resource["statement"], n, code)
	if v.Decision.Policy != "" {
		detail += fmt.Sprintf(", policy %s, rule %s", v.Decision.Policy, v.Decision.Rule)
	}
	e := errResp(state, "warden: "+string(code)+": "+clip(msg), detail)
	if v.Pending != nil {
		e.Hint = fmt.Sprintf("approval %s is pending; once a human approves it, run SET warden.approval = '%s' and then the same statement with the same arguments", v.Pending.ID, v.Pending.ID)
	}
	return e
}

// refuse answers a refused request and completes the statements decided
// before the refusal as not run.
func (ss *session) refused(ctx context.Context, calls []stmtCall, refused int, err error, extended bool) error {
	ss.s.notRun(ctx, calls, refused)
	var e *pgproto3.ErrorResponse
	if err != nil {
		e = errResp(stateSystemError, "warden: "+clip(err.Error()), "")
	} else {
		n, _ := calls[refused].call.Resource["statements"].(int)
		e = denial(calls[refused], n)
	}
	if extended {
		return ss.extError(e)
	}
	return ss.simpleError(e)
}

// query serves the simple query protocol: the whole text is analysed,
// every statement decided, and only then is the text sent, unchanged.
func (ss *session) query(ctx context.Context, sql string) error {
	if err := ss.drain(); err != nil {
		return err
	}
	a, err := ss.s.analyze(sql)
	if errors.Is(err, sqlguard.ErrNoStatement) {
		ss.be.Send(&pgproto3.EmptyQueryResponse{})
		ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus})
		return ss.flushClient()
	}
	if err != nil {
		return ss.simpleError(analysisError(err))
	}
	if len(a.Statements) == 1 && a.Statements[0].Setting == approvalSetting {
		id := a.Statements[0].SettingValue
		if !strings.HasPrefix(id, "apr_") || len(id) > 64 {
			return ss.simpleError(errResp("22023", "warden: warden.approval must be an approval id (apr_...)", ""))
		}
		ss.approvalID = id
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET")})
		ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus})
		return ss.flushClient()
	}
	calls, refused, err := ss.s.decide(ctx, ss.who, ss.c, a, nil, ss.meta())
	if err != nil || refused >= 0 {
		return ss.refused(ctx, calls, refused, err, false)
	}
	ss.sessionEffects(a)
	ss.fe.Send(&pgproto3.Query{String: sql})
	if err := ss.fe.Flush(); err != nil {
		ss.s.notRun(ctx, calls, -1)
		return err
	}
	idx, sent := 0, 0
	var rows int64
	finish := func(err error) {
		if idx < len(calls) {
			ss.finish(calls[idx], rows, err)
			idx++
		}
		rows = 0
	}
	defer func() {
		for ; idx < len(calls); idx++ {
			ss.finish(calls[idx], 0, errors.New("not run: an earlier statement failed"))
		}
	}()
	for {
		msg, err := ss.fe.Receive()
		if err != nil {
			finish(err)
			ss.fatal(stateConnectionFailure, "warden: the database connection was lost")
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			rows++
		case *pgproto3.CommandComplete:
			if n := pgconn.NewCommandTag(string(m.CommandTag)).RowsAffected(); n > rows {
				rows = n
			}
			finish(nil)
		case *pgproto3.ErrorResponse:
			finish(&pgconn.PgError{Code: m.Code, Message: m.Message})
		case *pgproto3.CopyInResponse:
			ss.be.Send(m)
			if err := ss.flushClient(); err != nil {
				return err
			}
			if err := ss.copyIn(); err != nil {
				return err
			}
			continue
		case *pgproto3.ReadyForQuery:
			ss.ready(m)
			ss.be.Send(m)
			return ss.flushClient()
		}
		ss.be.Send(msg)
		if sent++; sent%256 == 0 {
			if err := ss.flushClient(); err != nil {
				return err
			}
		}
	}
}

// copyIn relays COPY FROM STDIN data (the statement was decided as an
// insert into its table) until the client ends it.
func (ss *session) copyIn() error {
	n := 0
	for {
		msg, err := ss.be.Receive()
		if err != nil {
			ss.fe.Send(&pgproto3.CopyFail{Message: "client connection lost"})
			_ = ss.fe.Flush()
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			ss.fe.Send(m)
			if n++; n%64 == 0 {
				if err := ss.fe.Flush(); err != nil {
					return err
				}
			}
		case *pgproto3.CopyDone, *pgproto3.CopyFail:
			ss.fe.Send(m)
			return ss.fe.Flush()
		case *pgproto3.Flush, *pgproto3.Sync:
		default:
			ss.fe.Send(&pgproto3.CopyFail{Message: "protocol violation during COPY"})
			_ = ss.fe.Flush()
			ss.fatal(stateProtocolViolation, fmt.Sprintf("unexpected message %T during COPY", msg))
			return errTerminate
		}
	}
}

// ready records the transaction status; portals end with their
// transaction.
func (ss *session) ready(m *pgproto3.ReadyForQuery) {
	ss.txStatus = m.TxStatus
	if m.TxStatus == 'I' {
		clear(ss.portals)
	}
}

// sessionEffects forgets prepared statements when SQL could have
// replaced them behind the protocol's back (PREPARE, DEALLOCATE, DISCARD
// share the statement namespace with Parse): a name this session no
// longer knows cannot be bound, so a statement can never run with text
// other than the text decided.
func (ss *session) sessionEffects(a *analysis) {
	for _, st := range a.Statements {
		switch st.Kind {
		case "PrepareStmt", "DeallocateStmt":
			clear(ss.stmts)
		case "DiscardStmt":
			clear(ss.stmts)
			clear(ss.portals)
		}
	}
}

func (ss *session) parse(ctx context.Context, m *pgproto3.Parse) error {
	if ss.discard {
		return nil
	}
	if _, ok := ss.stmts[m.Name]; ok && m.Name != "" {
		return ss.extError(errResp(stateDuplicatePStatement, fmt.Sprintf("prepared statement %q already exists", clip(m.Name)), ""))
	}
	st := &stmtState{}
	a, err := ss.s.analyze(m.Query)
	switch {
	case errors.Is(err, sqlguard.ErrNoStatement):
	case err != nil:
		return ss.extError(analysisError(err))
	case len(a.Statements) > 1:
		return ss.extError(errResp(stateSyntaxError, "cannot insert multiple commands into a prepared statement", ""))
	default:
		st.a = a
		// Refuse now what no arguments could make allowed; everything
		// else is decided, with its arguments, at every Execute.
		if ss.s.o.Policies != nil {
			op, ok := ss.c.Operation(string(a.Statements[0].Class))
			if !ok || !ss.s.o.Policies.Possible(ss.ident, op.Action) {
				calls, refused, err := ss.s.decide(ctx, ss.who, ss.c, a, nil, ss.meta())
				if err != nil || refused >= 0 {
					return ss.refused(ctx, calls, refused, err, true)
				}
				ss.s.notRun(ctx, calls, -1)
			}
		}
	}
	ss.fe.Send(m)
	ss.pending = append(ss.pending, expect{kind: expParse, name: m.Name})
	ss.stmts[m.Name] = st
	return nil
}

func (ss *session) bind(m *pgproto3.Bind) error {
	if ss.discard {
		return nil
	}
	st, ok := ss.stmts[m.PreparedStatement]
	if !ok {
		return ss.extError(errResp(stateUndefinedPStatement, fmt.Sprintf("prepared statement %q does not exist", clip(m.PreparedStatement)), "Only statements prepared through Warden on this connection can be bound."))
	}
	if _, ok := ss.portals[m.DestinationPortal]; ok && m.DestinationPortal != "" {
		return ss.extError(errResp(stateDuplicateCursor, fmt.Sprintf("portal %q already exists", clip(m.DestinationPortal)), ""))
	}
	args, err := bindArgs(m)
	if err != nil {
		return ss.extError(errResp(stateProtocolViolation, err.Error(), ""))
	}
	ss.fe.Send(m)
	ss.pending = append(ss.pending, expect{kind: expBind, name: m.DestinationPortal})
	ss.portals[m.DestinationPortal] = &portalState{stmt: st, args: args}
	return nil
}

// bindArgs reads a Bind's parameters for the gate: text values as
// strings, binary ones as \x-hex, NULL as nil.
func bindArgs(m *pgproto3.Bind) ([]any, error) {
	f := m.ParameterFormatCodes
	if len(f) > 1 && len(f) != len(m.Parameters) {
		return nil, errors.New("bind message has a bad number of parameter format codes")
	}
	out := make([]any, len(m.Parameters))
	for i, p := range m.Parameters {
		format := int16(0)
		switch {
		case len(f) == 1:
			format = f[0]
		case len(f) > 1:
			format = f[i]
		}
		switch {
		case p == nil:
			out[i] = nil
		case format == 0:
			out[i] = string(p)
		default:
			out[i] = `\x` + hex.EncodeToString(p)
		}
	}
	return out, nil
}

func (ss *session) describe(m *pgproto3.Describe) error {
	if ss.discard {
		return nil
	}
	kind := expDescribeStmt
	if m.ObjectType == 'P' {
		kind = expDescribePortal
		if _, ok := ss.portals[m.Name]; !ok {
			return ss.extError(errResp(stateUndefinedCursor, fmt.Sprintf("portal %q does not exist", clip(m.Name)), ""))
		}
	} else if _, ok := ss.stmts[m.Name]; !ok {
		return ss.extError(errResp(stateUndefinedPStatement, fmt.Sprintf("prepared statement %q does not exist", clip(m.Name)), ""))
	}
	ss.fe.Send(m)
	ss.pending = append(ss.pending, expect{kind: kind})
	return nil
}

// execute decides the portal's statement with its arguments; each
// Execute is one governed call.
func (ss *session) execute(ctx context.Context, m *pgproto3.Execute) error {
	if ss.discard {
		return nil
	}
	pt, ok := ss.portals[m.Portal]
	if !ok {
		return ss.extError(errResp(stateUndefinedCursor, fmt.Sprintf("portal %q does not exist", clip(m.Portal)), ""))
	}
	e := expect{kind: expExecute}
	if pt.stmt.a != nil {
		calls, refused, err := ss.s.decide(ctx, ss.who, ss.c, pt.stmt.a, pt.args, ss.meta())
		if err != nil || refused >= 0 {
			return ss.refused(ctx, calls, refused, err, true)
		}
		e.call = &calls[0]
		ss.sessionEffects(pt.stmt.a)
	}
	ss.fe.Send(m)
	ss.pending = append(ss.pending, e)
	return nil
}

func (ss *session) closeMsg(m *pgproto3.Close) error {
	if ss.discard {
		return nil
	}
	if m.ObjectType == 'P' {
		delete(ss.portals, m.Name)
	} else if st, ok := ss.stmts[m.Name]; ok {
		delete(ss.stmts, m.Name)
		// Closing a statement closes the portals made from it.
		for k, p := range ss.portals {
			if p.stmt == st {
				delete(ss.portals, k)
			}
		}
	}
	ss.fe.Send(m)
	ss.pending = append(ss.pending, expect{kind: expClose})
	return nil
}

// completion is a statement's outcome waiting to be recorded.
type completion struct {
	sc   stmtCall
	rows int64
	err  error
}

// finish notes the outcome of a statement for recordDone.
func (ss *session) finish(sc stmtCall, rows int64, err error) {
	ss.done = append(ss.done, completion{sc: sc, rows: rows, err: err})
}

// recordDone writes the completed audit records of the statements
// finished so far, in order. The decided record, written before the
// statement was forwarded, is the one that must be durable first; the
// completed record is queued for the audit log's next commit
// (gate.Complete does not wait for it) once the answer has been flushed
// to the client, so it stays off the client's path like the HTTP fronts'
// record written after the response, without a goroutine and a wakeup per
// statement to hand it over. A full audit queue makes the session wait
// (a record is never dropped).
func (ss *session) recordDone() {
	if len(ss.done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	for i := range ss.done {
		c := &ss.done[i]
		ss.s.recordOutcome(ctx, c.sc, c.rows, 0, c.err)
		*c = completion{}
	}
	ss.done = ss.done[:0]
}

// extError answers a refused extended-protocol message. Its place in the
// stream goes to the poison, whose error becomes Warden's refusal: the
// client gets it after the answers to the messages before it, and the
// database, like PostgreSQL for any error, fails the transaction and skips
// everything up to Sync (so does the listener).
func (ss *session) extError(e *pgproto3.ErrorResponse) error {
	// A failed Parse discards the unnamed statement (and so its portal).
	delete(ss.stmts, "")
	delete(ss.portals, "")
	ss.fe.Send(&pgproto3.Parse{Query: poisonSQL})
	ss.pending = append(ss.pending, expect{kind: expPoison, refusal: e})
	ss.discard = true
	return nil
}

// simpleError answers a refused simple query (or function call). Inside a
// transaction block the database is told too (the poison), so the block
// fails as it would for the client's own error and a later COMMIT rolls
// back.
func (ss *session) simpleError(e *pgproto3.ErrorResponse) error {
	if err := ss.drain(); err != nil {
		return err
	}
	if ss.txStatus == 'T' {
		ss.fe.Send(&pgproto3.Query{String: poisonSQL})
		if err := ss.fe.Flush(); err != nil {
			return err
		}
		for done := false; !done; {
			msg, err := ss.fe.Receive()
			if err != nil {
				ss.fatal(stateConnectionFailure, "warden: the database connection was lost")
				return err
			}
			switch m := msg.(type) {
			case *pgproto3.ErrorResponse:
			case *pgproto3.ReadyForQuery:
				ss.ready(m)
				done = true
			default:
				ss.be.Send(msg)
			}
		}
	}
	ss.be.Send(e)
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus})
	return ss.flushClient()
}

func (ss *session) flushClient() error {
	_ = ss.conn.SetWriteDeadline(time.Now().Add(ss.o.WriteTimeout))
	return ss.be.Flush()
}

// drain relays the database's answers to every forwarded message still
// waiting for one, in order.
func (ss *session) drain() error {
	if len(ss.pending) == 0 {
		return ss.flushClient()
	}
	if ss.pending[len(ss.pending)-1].kind != expSync {
		ss.fe.Send(&pgproto3.Flush{})
	}
	if err := ss.fe.Flush(); err != nil {
		return err
	}
	upErr := false
	sent := 0
	defer func() {
		// Whatever was not answered (the connection failed) never ran.
		for _, e := range ss.pending {
			if e.call != nil {
				ss.finish(*e.call, e.rows, errors.New("not run: the database connection failed"))
			}
		}
		ss.pending = ss.pending[:0]
	}()
	for len(ss.pending) > 0 {
		e := &ss.pending[0]
		if upErr && e.kind != expSync {
			// PostgreSQL skips everything up to Sync after an error.
			ss.forget(e, errors.New("not run: an earlier message of the batch failed"))
			ss.pending = ss.pending[1:]
			continue
		}
		msg, err := ss.fe.Receive()
		if err != nil {
			ss.fatal(stateConnectionFailure, "warden: the database connection was lost")
			return err
		}
		done := false
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
		case *pgproto3.ErrorResponse:
			if e.kind == expPoison {
				msg = e.refusal
			}
			if e.kind == expSync {
				ss.be.Send(m)
				_ = ss.flushClient()
				return errors.New("database error while idle: " + m.Message)
			}
			ss.forget(e, &pgconn.PgError{Code: m.Code, Message: m.Message})
			upErr, ss.discard = true, true
			ss.pending = ss.pending[1:]
			ss.be.Send(msg)
			continue
		default:
			var ok bool
			done, ok = ss.answer(e, msg)
			if !ok {
				ss.fatal(stateProtocolViolation, fmt.Sprintf("warden: unexpected answer %T from the database", msg))
				return errTerminate
			}
			if _, isCopyIn := msg.(*pgproto3.CopyInResponse); isCopyIn {
				// COPY FROM STDIN runs through the simple query protocol
				// only; the database answers this with an error.
				ss.fe.Send(&pgproto3.CopyFail{Message: "COPY FROM STDIN through Warden needs the simple query protocol"})
				if err := ss.fe.Flush(); err != nil {
					return err
				}
				continue
			}
		}
		ss.be.Send(msg)
		if done {
			ss.pending = ss.pending[1:]
		}
		if sent++; sent%256 == 0 {
			if err := ss.flushClient(); err != nil {
				return err
			}
		}
	}
	return ss.flushClient()
}

// answer checks that msg answers e and records what it says; done
// reports that e is fully answered.
func (ss *session) answer(e *expect, msg pgproto3.BackendMessage) (done, ok bool) {
	switch e.kind {
	case expParse:
		_, ok = msg.(*pgproto3.ParseComplete)
		return true, ok
	case expBind:
		_, ok = msg.(*pgproto3.BindComplete)
		return true, ok
	case expClose:
		_, ok = msg.(*pgproto3.CloseComplete)
		return true, ok
	case expDescribeStmt, expDescribePortal:
		switch msg.(type) {
		case *pgproto3.ParameterDescription:
			return false, e.kind == expDescribeStmt
		case *pgproto3.RowDescription, *pgproto3.NoData:
			return true, true
		}
		return false, false
	case expExecute:
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			e.rows++
			return false, true
		case *pgproto3.CopyOutResponse, *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyInResponse:
			return false, true
		case *pgproto3.CommandComplete:
			if n := pgconn.NewCommandTag(string(m.CommandTag)).RowsAffected(); n > e.rows {
				e.rows = n
			}
		case *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
		default:
			return false, false
		}
		if e.call != nil {
			ss.finish(*e.call, e.rows, nil)
			e.call = nil
		}
		return true, true
	case expSync:
		m, ok := msg.(*pgproto3.ReadyForQuery)
		if ok {
			ss.ready(m)
		}
		return true, ok
	}
	return false, false
}

// forget drops an expectation that will never be answered: what it would
// have created does not exist, and a decided statement did not run.
func (ss *session) forget(e *expect, why error) {
	switch e.kind {
	case expParse:
		delete(ss.stmts, e.name)
	case expBind:
		delete(ss.portals, e.name)
	case expExecute:
		if e.call != nil {
			ss.finish(*e.call, e.rows, why)
			e.call = nil
		}
	}
}
