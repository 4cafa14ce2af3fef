// Package store holds Warden's data access: the SQL for every Store contract,
// written once for SQLite and PostgreSQL, the connection setup for both
// engines, and the embedded, versioned migrations. It holds no business rules;
// validation, lifecycle and permissions live in the domain packages above it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"warden"
)

// Engine names the database behind a Store.
type Engine string

// Supported engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Options says where the data lives. DSN, when set, must be a postgres:// or
// postgresql:// URL; otherwise SQLite is used in DataDir.
type Options struct {
	DataDir string
	DSN     string
}

// Store is the database handle every Store contract is implemented on.
type Store struct {
	db     *sql.DB
	engine Engine
	path   string // SQLite file, for messages

	mu      sync.RWMutex
	rebound map[string]string // "?"-placeholder SQL -> engine SQL

	// changesGen counts admin changes recorded by this process; auditedGen
	// is the count the audit log had seen when it last found the outbox
	// empty. They differ when changes may wait to be audited (a hint that
	// spares the audit writer a query per batch; its pump always looks).
	changesGen, auditedGen atomic.Int64

	// SQLite's background WAL checkpoint (walcheckpoint.go): its own
	// connection, its goroutine's stop and done, and whether the log is
	// long enough for the audit writer to let it start over.
	cpDB           *sql.DB
	cpStop, cpDone chan struct{}
	walLong        atomic.Bool
}

// Open connects to the database named by opts and applies pending migrations.
func Open(ctx context.Context, opts Options) (*Store, error) {
	var (
		s   *Store
		err error
	)
	if opts.DSN != "" {
		s, err = openPostgres(ctx, opts.DSN)
	} else {
		s, err = openSQLite(ctx, opts.DataDir)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.changesGen.Store(1) // changes from before this start may be pending
	return s, nil
}

// IsPostgresDSN reports whether dsn names a PostgreSQL database.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	if !IsPostgresDSN(dsn) {
		return nil, warden.FieldError("database", "must be a postgres:// or postgresql:// URL")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInvalid, "cannot parse the PostgreSQL DSN")
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, warden.Wrap(err, warden.CodeUnavailable, "cannot reach PostgreSQL")
	}
	return &Store{db: db, engine: Postgres, rebound: map[string]string{}}, nil
}

func openSQLite(ctx context.Context, dir string) (*Store, error) {
	if dir == "" {
		return nil, warden.FieldError("data", "a data directory is required for SQLite")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "cannot create the data directory")
	}
	path := filepath.Join(dir, "warden.db")
	db, err := sql.Open("sqlite", sqliteDSN(path, 10000))
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUnavailable, "cannot open the SQLite database")
	}
	// One writer at a time is SQLite's model; a few connections let reads
	// proceed in parallel under WAL.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, warden.Wrap(err, warden.CodeUnavailable, "cannot open the SQLite database at "+path)
	}
	s := &Store{db: db, engine: SQLite, path: path, rebound: map[string]string{}}
	if err := s.startWALCheckpointer(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// sqliteDSN is the connection string for the database file at path. WAL
// lets readers run beside the writer; synchronous=FULL makes every commit
// durable (the audit path relies on it); _txlock=immediate takes the write
// lock at BEGIN so two writers queue instead of deadlocking; busy is how
// long a connection waits for a lock (milliseconds).
func sqliteDSN(path string, busy int) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Checkpoints run in the background (walcheckpoint.go); the inline one
	// is a backstop only.
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walBackstopPages))
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode()
}

// Engine reports which database the store runs on.
func (s *Store) Engine() Engine { return s.engine }

// DB exposes the handle for packages that keep their own tables (audit).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error {
	s.stopWALCheckpointer()
	return s.db.Close()
}

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return warden.Wrap(err, warden.CodeUnavailable, "database unavailable")
	}
	return nil
}

// Rebind turns "?" placeholders into the engine's form ($1, $2, ... on
// PostgreSQL). The SQL in this package never contains a literal "?".
func (s *Store) Rebind(query string) string {
	if s.engine != Postgres {
		return query
	}
	s.mu.RLock()
	q, ok := s.rebound[query]
	s.mu.RUnlock()
	if ok {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(query[i])
	}
	q = b.String()
	s.mu.Lock()
	s.rebound[query] = q
	s.mu.Unlock()
	return q
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	res, err := q.ExecContext(ctx, s.Rebind(query), args...)
	return res, s.dbErr(err)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	rows, err := q.QueryContext(ctx, s.Rebind(query), args...)
	return rows, s.dbErr(err)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, s.Rebind(query), args...)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.dbErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return s.dbErr(tx.Commit())
}

// dbErr maps driver errors onto Warden's codes: unique violations become
// conflicts, anything that smells of a lost connection becomes unavailable,
// the rest internal. The driver text is kept as the cause for logs only.
func (s *Store) dbErr(err error) error {
	if err == nil {
		return nil
	}
	var we *warden.Error
	if errors.As(err, &we) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return warden.Wrap(err, warden.CodeNotFound, "not found")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return warden.Wrap(err, warden.CodeUnavailable, "request cancelled or timed out")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return warden.Wrap(err, warden.CodeConflict, "already exists")
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"), pe.Code == "53300":
			return warden.Wrap(err, warden.CodeUnavailable, "database unavailable")
		}
		return warden.Wrap(err, warden.CodeInternal, "database error")
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return warden.Wrap(err, warden.CodeConflict, "already exists")
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
			return warden.Wrap(err, warden.CodeUnavailable, "database unavailable")
		}
		if se.Code()&0xff == sqlite3.SQLITE_IOERR || se.Code()&0xff == sqlite3.SQLITE_BUSY {
			return warden.Wrap(err, warden.CodeUnavailable, "database unavailable")
		}
		return warden.Wrap(err, warden.CodeInternal, "database error")
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, driverBadConn) || isNetErr(err) {
		return warden.Wrap(err, warden.CodeUnavailable, "database unavailable")
	}
	return warden.Wrap(err, warden.CodeInternal, "database error")
}

// micros stores times as integer microseconds since the epoch: one portable
// representation for both engines, ordered and indexable.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil || t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid || v.Int64 == 0 {
		return nil
	}
	t := time.UnixMicro(v.Int64).UTC()
	return &t
}
