package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"warden"
	"warden/internal/connector"
	"warden/internal/policy"
)

// ListenerOptions configure the wire listener.
type ListenerOptions struct {
	// TLS, when set, is offered to clients and required: a client that
	// does not ask for TLS is refused (its password would travel in
	// clear). Without it the listener speaks cleartext and must stay on
	// loopback.
	TLS *tls.Config
	// StartupTimeout bounds the startup and authentication exchange
	// (default 10s).
	StartupTimeout time.Duration
	// WriteTimeout bounds how long a write to a client may block (default
	// 30s): a client that never reads its results is disconnected, and its
	// upstream session with it.
	WriteTimeout time.Duration
	// MaxConns bounds concurrent client connections (default 1000).
	MaxConns int
}

// Possible answers whether an identity could ever be allowed (or sent for
// approval) an action; the listener uses it to refuse at Parse what no
// arguments could make allowed.
type Possible interface {
	Possible(id policy.Identity, action string) bool
}

// SQLSTATE codes the listener answers with.
const (
	stateInsufficientPrivilege = "42501"
	stateSyntaxError           = "42601"
	stateProgramLimitExceeded  = "54000"
	stateInvalidPassword       = "28P01"
	stateInvalidAuthorization  = "28000"
	stateInvalidCatalog        = "3D000"
	stateProtocolViolation     = "08P01"
	stateConnectionFailure     = "08006"
	stateCannotConnect         = "08001"
	stateUndefinedPStatement   = "26000"
	stateUndefinedCursor       = "34000"
	stateDuplicatePStatement   = "42P05"
	stateDuplicateCursor       = "42P03"
	stateSystemError           = "58000"
	stateFeatureNotSupported   = "0A000"
)

// Serve accepts PostgreSQL clients on ln until ctx ends or ln fails.
// Every client authenticates as an identity (user = its name, password =
// its key or access token), names a postgres connector as its database,
// and gets one upstream session as the identity's credential; every query
// is decided and audited before it reaches the database.
func (s *Service) Serve(ctx context.Context, ln net.Listener, o ListenerOptions) error {
	if o.StartupTimeout <= 0 {
		o.StartupTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1000
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, o.MaxConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		select {
		case slots <- struct{}{}:
		default:
			refuse(conn, "53300", "too many connections to the Warden listener")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			ss := &session{s: s, o: o, conn: conn}
			ss.run(ctx)
		}()
	}
}

// refuse answers a client that could not start with an error and closes.
func refuse(conn net.Conn, code, msg string) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	be := pgproto3.NewBackend(conn, conn)
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = be.Flush()
	conn.Close()
}

// session is one client connection.
type session struct {
	s    *Service
	o    ListenerOptions
	conn net.Conn
	be   *pgproto3.Backend

	who      warden.Principal
	ident    policy.Identity
	c        *connector.Connector
	clientIP string

	up       net.Conn
	fe       *pgproto3.Frontend
	upPID    uint32
	upSecret []byte
	key      uint64

	stmts   map[string]*stmtState
	portals map[string]*portalState
	pending []expect
	// discard is set after an error in an extended-protocol batch: like
	// PostgreSQL, messages are ignored until Sync.
	discard  bool
	txStatus byte
	// approvalID is the approval presented for the next statement.
	approvalID string
	// done holds the outcomes of statements whose answers are being
	// relayed; they are recorded once the answer is on its way to the
	// client (recordDone).
	done []completion
	mu   sync.Mutex // guards up for cancel requests
}

// run serves the connection until the client leaves or fails.
func (ss *session) run(ctx context.Context) {
	defer ss.conn.Close()
	if tcp, ok := ss.conn.RemoteAddr().(*net.TCPAddr); ok {
		ss.clientIP = tcp.IP.String()
	}
	if !ss.startup(ctx) {
		return
	}
	defer ss.up.Close()
	defer ss.s.cancelKeys.Delete(ss.key)
	// The upstream session ends with the client's.
	stop := context.AfterFunc(ctx, func() { ss.conn.Close(); ss.up.Close() })
	defer stop()
	ss.stmts = map[string]*stmtState{}
	ss.portals = map[string]*portalState{}
	defer ss.recordDone()
	for {
		msg, err := ss.be.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				ss.fatal(stateProtocolViolation, "invalid message from the client: "+clip(err.Error()))
			}
			return
		}
		err = ss.handle(ctx, msg)
		ss.recordDone()
		if err != nil {
			if errors.Is(err, errTerminate) {
				return
			}
			ss.s.log.Debug("pgwire session ended", "identity", ss.who.ID, "connector", ss.c.Name, "err", err)
			return
		}
	}
}

var errTerminate = errors.New("terminate")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fatal sends a FATAL error; the caller closes the connection.
func (ss *session) fatal(code, msg string) {
	_ = ss.conn.SetWriteDeadline(time.Now().Add(time.Second))
	ss.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = ss.be.Flush()
}

// startupParams are the client's startup settings passed on to the
// database; any other (options, search_path, role, replication, ...) is
// dropped, so the session starts as Warden configures it.
var startupParams = map[string]bool{
	"application_name": true, "datestyle": true, "timezone": true, "intervalstyle": true, "extra_float_digits": true,
	"bytea_output": true, "client_min_messages": true,
}

// startup negotiates TLS, authenticates the identity, finds the
// connector and opens the upstream session. It reports whether the
// session may go on.
func (ss *session) startup(ctx context.Context) bool {
	_ = ss.conn.SetDeadline(time.Now().Add(ss.o.StartupTimeout))
	ss.be = pgproto3.NewBackend(ss.conn, ss.conn)
	ss.be.SetMaxBodyLen(maxMessage)
	secure := false
	var sm *pgproto3.StartupMessage
	for sm == nil {
		msg, err := ss.be.ReceiveStartupMessage()
		if err != nil {
			ss.fatal(stateProtocolViolation, "invalid startup packet")
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if ss.o.TLS == nil || secure {
				if _, err := ss.conn.Write([]byte{'N'}); err != nil {
					return false
				}
				continue
			}
			if _, err := ss.conn.Write([]byte{'S'}); err != nil {
				return false
			}
			tc := tls.Server(ss.conn, ss.o.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return false
			}
			ss.conn, secure = tc, true
			ss.be = pgproto3.NewBackend(ss.conn, ss.conn)
			ss.be.SetMaxBodyLen(maxMessage)
		case *pgproto3.GSSEncRequest:
			if _, err := ss.conn.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			ss.s.cancel(m)
			return false
		case *pgproto3.StartupMessage:
			sm = m
		}
	}
	if ss.o.TLS != nil && !secure {
		ss.fatal(stateInvalidAuthorization, "this Warden listener requires TLS (sslmode=require or stronger)")
		return false
	}
	if sm.ProtocolVersion != pgproto3.ProtocolVersion30 {
		ss.be.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0})
	}
	user, database := sm.Parameters["user"], sm.Parameters["database"]
	if database == "" {
		database = user
	}
	extra := map[string]string{}
	for k, v := range sm.Parameters {
		if startupParams[strings.ToLower(k)] && len(v) <= 256 {
			extra[k] = v
		}
	}

	ss.be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := ss.be.Flush(); err != nil {
		return false
	}
	if err := ss.be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return false
	}
	msg, err := ss.be.Receive()
	if err != nil {
		return false
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		ss.fatal(stateProtocolViolation, "expected a password message")
		return false
	}
	who, err := ss.s.o.Authn.Authenticate(ctx, pm.Password)
	if err != nil || who.Kind != warden.PrincipalIdentity {
		ss.fatal(stateInvalidPassword, fmt.Sprintf("password authentication failed for user %q: give the identity's Warden API key or access token as the password", clip(user)))
		return false
	}
	id, err := ss.s.o.Identities.Resolve(ctx, who.ID)
	if err != nil {
		ss.fatal(stateInvalidAuthorization, "warden: the identity cannot be resolved")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(user), []byte(id.Name)) != 1 && user != id.ID {
		ss.fatal(stateInvalidPassword, fmt.Sprintf("password authentication failed for user %q: the key belongs to another identity", clip(user)))
		return false
	}
	ss.who = who
	ss.ident = policy.Identity{ID: id.ID, Name: id.Name, Type: id.Type, Owner: id.Owner, Environment: id.Environment, Labels: id.Labels}
	c, ok := ss.s.o.Connectors.Get(database)
	if !ok || !c.IsPostgres() {
		ss.fatal(stateInvalidCatalog, fmt.Sprintf("database %q does not exist: name a Warden connector of type postgres", clip(database)))
		return false
	}
	ss.c = c
	mat, err := ss.s.o.Credentials.Resolve(ctx, c.Name, who.ID)
	if err != nil {
		ss.fatal(stateCannotConnect, "warden: no credential for connector "+c.Name+": "+string(warden.ErrorCode(err)))
		return false
	}
	cfg, err := pgconn.ParseConfig(connString(c))
	if err == nil {
		err = applyLogin(cfg, c, mat, extra)
	}
	if err != nil {
		ss.fatal(stateCannotConnect, "warden: connector "+c.Name+" cannot connect: "+clip(err.Error()))
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, ss.o.StartupTimeout)
	pc, err := pgconn.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		ss.s.log.Warn("pgwire: upstream connection failed", "connector", c.Name, "identity", who.ID, "err", safeErr(err))
		ss.fatal(stateCannotConnect, "warden: cannot connect to the database of connector "+c.Name+": "+safeErr(err).Error())
		return false
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		ss.fatal(stateCannotConnect, "warden: upstream session unusable")
		return false
	}
	ss.up, ss.fe, ss.upPID, ss.upSecret, ss.txStatus = hj.Conn, hj.Frontend, hj.PID, hj.SecretKey, hj.TxStatus
	ss.fe.SetMaxBodyLen(0)
	var kb [8]byte
	_, _ = rand.Read(kb[:])
	ss.key = binary.BigEndian.Uint64(kb[:])
	ss.s.cancelKeys.Store(ss.key, ss)

	ss.be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range hj.ParameterStatuses {
		ss.be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	ss.be.Send(&pgproto3.BackendKeyData{ProcessID: uint32(ss.key >> 32), SecretKey: kb[4:]})
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.txStatus})
	if err := ss.be.Flush(); err != nil {
		ss.up.Close()
		return false
	}
	_ = ss.conn.SetDeadline(time.Time{})
	return true
}

// maxMessage bounds a client message: the largest SQL text plus room for
// arguments.
const maxMessage = 1<<20 + 64<<10

// cancel forwards a client's CancelRequest for a session of this
// listener to the database.
func (s *Service) cancel(m *pgproto3.CancelRequest) {
	if len(m.SecretKey) != 4 {
		return
	}
	key := uint64(m.ProcessID)<<32 | uint64(binary.BigEndian.Uint32(m.SecretKey))
	v, ok := s.cancelKeys.Load(key)
	if !ok {
		return
	}
	ss := v.(*session)
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", ss.c.Postgres().Addr())
	if err != nil {
		return
	}
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.CancelRequest{ProcessID: ss.upPID, SecretKey: ss.upSecret})
	_ = fe.Flush()
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
