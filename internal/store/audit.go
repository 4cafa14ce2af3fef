package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"warden/internal/audit"
)

var _ audit.Store = (*Store)(nil)

// auditCols is the column order of audit_events, shared by insert, scan and
// query.
const auditCols = `seq, v, id, time, kind, actor, actor_roles, identity, action, resource, decision, code, policy, rule, reason, approval_id, credential_id, trace_id, req_method, req_path, client_ip, user_agent, req_bytes, resp_bytes, status, latency_us, detail, prev_hash, hash`

const auditNCols = 29

// auditChunk is the number of rows per multi-row INSERT: one statement per
// chunk keeps round trips and parsing low (29 columns x 128 rows stays far
// below both engines' parameter limits).
const auditChunk = 128

// PrepareAudit implements audit.Store: the head row and the append-only
// guards. On PostgreSQL a trigger refuses UPDATE and DELETE on audit_events
// (and TRUNCATE); on SQLite triggers do the same (the file's owner can still
// edit it, which Verify and the checkpoints catch). The only DELETE let
// through is a retention transaction's (ArchiveAudit); audit_checkpoints
// and audit_anchors refuse every UPDATE and DELETE.
func (s *Store) PrepareAudit(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING`, make([]byte, 32)); err != nil {
			return err
		}
		var stmts []string
		if s.engine == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
				return s.dbErr(err)
			}
			stmts = []string{
				// The one exception is a retention transaction (see
				// ArchiveAudit): it deletes archived events while a gate
				// row naming its anchor exists, inside that transaction.
				// CREATE OR REPLACE migrates databases that have the
				// unconditional function.
				`CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' AND EXISTS (
      SELECT 1 FROM audit_retention_gate g JOIN audit_anchors a ON a.seq = g.seq WHERE OLD.seq <= g.seq) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$`,
				`CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only()`,
				`CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_append_only()`,
				`CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only()`,
				`CREATE OR REPLACE TRIGGER audit_anchors_append_only BEFORE UPDATE OR DELETE ON audit_anchors FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only()`,
				`CREATE OR REPLACE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_append_only()`,
			}
		} else {
			// Databases made before retention have an unconditional
			// audit_events_no_delete; replace it (in this transaction)
			// with the one that lets a retention transaction through.
			var def string
			err := s.queryRow(ctx, tx, `SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_delete'`).Scan(&def)
			if err == nil && !strings.Contains(def, "audit_retention_gate") {
				stmts = append(stmts, `DROP TRIGGER audit_events_no_delete`)
			} else if err != nil && err != sql.ErrNoRows {
				return s.dbErr(err)
			}
			stmts = append(stmts,
				`CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
				`CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_retention_gate g JOIN audit_anchors a ON a.seq = g.seq WHERE OLD.seq <= g.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
				`CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END`,
				`CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END`,
				`CREATE TRIGGER IF NOT EXISTS audit_anchors_no_update BEFORE UPDATE ON audit_anchors BEGIN SELECT RAISE(ABORT, 'audit anchors are append-only'); END`,
				`CREATE TRIGGER IF NOT EXISTS audit_anchors_no_delete BEFORE DELETE ON audit_anchors BEGIN SELECT RAISE(ABORT, 'audit anchors are append-only'); END`,
			)
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return s.dbErr(err)
			}
		}
		return nil
	})
}

// AppendAudit implements audit.Store. The head row is locked first (FOR
// UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write
// lock), so concurrent writers, in this process or in replicas, take turns
// and never share a seq. On PostgreSQL the transaction forces
// synchronous_commit on: the commit returns only once the WAL is flushed,
// whatever the server's default.
func (s *Store) AppendAudit(ctx context.Context, maxChanges int, build audit.BuildFunc) error {
	gen := s.changesGen.Load()
	drained := false
	s.walCatchUp(ctx) // between batches: let a long SQLite log start over
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		lock := ``
		if s.engine == Postgres {
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO on`); err != nil {
				return s.dbErr(err)
			}
			lock = ` FOR UPDATE`
		}
		var head audit.Head
		var hash []byte
		headStmt, err := s.auditStatic(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+lock)
		if err != nil {
			return err
		}
		if err := tx.StmtContext(ctx, headStmt).QueryRowContext(ctx).Scan(&head.Seq, &hash); err != nil {
			return s.dbErr(err)
		}
		copy(head.Hash[:], hash)
		changes, err := s.pendingChanges(ctx, tx, maxChanges)
		if err != nil {
			return err
		}
		drained = maxChanges > 0 && len(changes) < maxChanges
		b, err := build(head, changes)
		if err != nil {
			return err
		}
		if len(b.Events) == 0 {
			return nil
		}
		if err := s.insertEvents(ctx, tx, b.Events); err != nil {
			return err
		}
		for i, c := range changes {
			if _, err := s.exec(ctx, tx, `UPDATE changes SET audit_seq = ? WHERE seq = ? AND audit_seq IS NULL`, b.Events[b.ChangeEvent[i]].Seq, c.Seq); err != nil {
				return err
			}
		}
		last := b.Events[len(b.Events)-1]
		upd, err := s.auditStatic(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`)
		if err != nil {
			return err
		}
		_, err = tx.StmtContext(ctx, upd).ExecContext(ctx, last.Seq, last.Hash[:])
		return s.dbErr(err)
	})
	if err == nil && drained {
		// Every change recorded before gen was committed and is now
		// audited, or is adopted by the next pump.
		s.auditedGen.Store(gen)
	}
	return err
}

// auditStaticStmts caches the audit path's fixed statements per store, so
// the writer does not parse SQL on every batch (parsing dominated a small
// batch's cost on SQLite).
var auditStaticStmts sync.Map // auditStmtKey -> *sql.Stmt

type auditStmtKey struct {
	s *Store
	q string
}

func (s *Store) auditStatic(ctx context.Context, q string) (*sql.Stmt, error) {
	k := auditStmtKey{s, q}
	if v, ok := auditStaticStmts.Load(k); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, s.Rebind(q))
	if err != nil {
		return nil, s.dbErr(err)
	}
	if v, loaded := auditStaticStmts.LoadOrStore(k, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

// ChangesMaybePending implements audit.Store.
func (s *Store) ChangesMaybePending() bool { return s.changesGen.Load() != s.auditedGen.Load() }

func (s *Store) pendingChanges(ctx context.Context, tx *sql.Tx, limit int) ([]audit.PendingChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.query(ctx, tx, `SELECT seq, id, at, actor, action, target_kind, target, detail FROM changes WHERE audit_seq IS NULL ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.PendingChange
	for rows.Next() {
		var (
			pc     audit.PendingChange
			at     int64
			detail string
		)
		if err := rows.Scan(&pc.Seq, &pc.Change.ID, &at, &pc.Change.Actor, &pc.Change.Action, &pc.Change.TargetKind, &pc.Change.Target, &detail); err != nil {
			return nil, s.dbErr(err)
		}
		pc.Change.At = fromMicros(at)
		if detail != "" && detail != "{}" {
			// A detail that does not decode is adopted without it rather
			// than blocking the outbox; the change row keeps the original.
			_ = json.Unmarshal([]byte(detail), &pc.Change.Detail)
		}
		out = append(out, pc)
	}
	return out, s.dbErr(rows.Err())
}

// insertEvents writes events with multi-row INSERTs: chunks of
// auditChunk rows, then the remainder in power-of-two chunks, so at most
// eight statement shapes exist and each is prepared once per connection
// (parsing a 128-row INSERT costs more than executing it).
func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, evs []*audit.Event) error {
	args := make([]any, 0, min(len(evs), auditChunk)*auditNCols)
	for start := 0; start < len(evs); {
		n := auditChunk
		for n > len(evs)-start {
			n /= 2
		}
		chunk := evs[start : start+n]
		start += n
		args = args[:0]
		for _, e := range chunk {
			detail := ""
			if len(e.Detail) > 0 {
				detail = string(e.Detail)
			}
			args = append(args, e.Seq, e.V, e.ID, micros(e.Time), e.Kind, e.Actor, audit.JoinRoles(e.ActorRoles), e.Identity,
				e.Action, e.Resource, e.Decision, e.Code, e.Policy, e.Rule, e.Reason, e.ApprovalID, e.CredentialID,
				e.TraceID, e.Request.Method, e.Request.Path, e.Request.ClientIP, e.Request.UserAgent, e.Request.Bytes,
				e.Request.ResponseBytes, int64(e.Outcome.Status), e.Outcome.Latency.Microseconds(), detail,
				e.PrevHash[:], e.Hash[:])
		}
		stmt, err := s.auditInsertStmt(ctx, n)
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
			return s.dbErr(err)
		}
	}
	return nil
}

// auditStmts holds each store's prepared INSERTs by row count. It lives
// beside Store (not in it) because only the audit path uses it; the
// statements die with the database handle.
var auditStmts sync.Map // *Store -> *[auditChunk + 1]*sql.Stmt

var auditStmtMu sync.Mutex

func (s *Store) auditInsertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	v, _ := auditStmts.LoadOrStore(s, new([auditChunk + 1]*sql.Stmt))
	arr := v.(*[auditChunk + 1]*sql.Stmt)
	auditStmtMu.Lock()
	defer auditStmtMu.Unlock()
	if arr[n] == nil {
		st, err := s.db.PrepareContext(ctx, s.Rebind(insertSQL(n)))
		if err != nil {
			return nil, s.dbErr(err)
		}
		arr[n] = st
	}
	return arr[n], nil
}

var insertSQLCache [auditChunk + 1]string

func init() {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", auditNCols), ", ") + ")"
	for n := 1; n <= auditChunk; n *= 2 {
		insertSQLCache[n] = `INSERT INTO audit_events (` + auditCols + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	}
}

func insertSQL(n int) string { return insertSQLCache[n] }

// AuditHead implements audit.Store.
func (s *Store) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	var hash []byte
	err := s.queryRow(ctx, s.db, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &hash)
	if err == sql.ErrNoRows {
		return audit.Head{}, nil
	}
	if err != nil {
		return h, s.dbErr(err)
	}
	copy(h.Hash[:], hash)
	return h, nil
}

// auditScanner scans audit_events rows into a reused Event.
type auditScanner struct {
	t, bytesIn, bytesOut, status, lat int64
	roles, detail                     string
	prev, hash                        []byte
}

func (a *auditScanner) scan(rows *sql.Rows, e *audit.Event) error {
	if err := rows.Scan(&e.Seq, &e.V, &e.ID, &a.t, &e.Kind, &e.Actor, &a.roles, &e.Identity, &e.Action, &e.Resource,
		&e.Decision, &e.Code, &e.Policy, &e.Rule, &e.Reason, &e.ApprovalID, &e.CredentialID, &e.TraceID,
		&e.Request.Method, &e.Request.Path, &e.Request.ClientIP, &e.Request.UserAgent, &a.bytesIn, &a.bytesOut,
		&a.status, &a.lat, &a.detail, &a.prev, &a.hash); err != nil {
		return err
	}
	e.Time = fromMicros(a.t)
	e.ActorRoles = audit.SplitRoles(a.roles)
	e.Request.Bytes, e.Request.ResponseBytes = a.bytesIn, a.bytesOut
	e.Outcome.Status, e.Outcome.Latency = int(a.status), time.Duration(a.lat)*time.Microsecond
	e.Detail = nil
	if a.detail != "" {
		e.Detail = json.RawMessage(a.detail)
	}
	// A stored hash of the wrong length cannot match; keep it visibly
	// wrong rather than silently padded.
	e.PrevHash, e.Hash = audit.Hash{}, audit.Hash{}
	if copy(e.PrevHash[:], a.prev) != 32 || len(a.prev) != 32 {
		e.PrevHash[0] ^= 0xff
	}
	if copy(e.Hash[:], a.hash) != 32 || len(a.hash) != 32 {
		e.Hash[0] ^= 0xff
	}
	return nil
}

// ScanAudit implements audit.Store, reading in pages so no single query
// holds a long read transaction.
func (s *Store) ScanAudit(ctx context.Context, after int64, fn func(*audit.Event) error) error {
	const page = 10000
	var (
		e  audit.Event
		sc auditScanner
	)
	for {
		rows, err := s.query(ctx, s.db, `SELECT `+auditCols+` FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, page)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			if err := sc.scan(rows, &e); err != nil {
				rows.Close()
				return s.dbErr(err)
			}
			n++
			after = e.Seq
			if err := fn(&e); err != nil {
				rows.Close()
				return err
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return s.dbErr(err)
		}
		if n < page {
			return nil
		}
	}
}

// QueryAudit implements audit.Store. Every value is a bound parameter;
// patterns are escaped so that only '*' is special.
func (s *Store) QueryAudit(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if f.Identity != "" {
		add(`identity = ?`, f.Identity)
	}
	if f.Kind != "" {
		add(`kind = ?`, f.Kind)
	}
	if f.Decision != "" {
		add(`decision = ?`, f.Decision)
	}
	if f.Action != "" {
		if strings.Contains(f.Action, "*") {
			if s.engine == Postgres {
				add(`action LIKE ? ESCAPE '\'`, likePattern(f.Action, "*", "%"))
			} else {
				add(`action GLOB ?`, globPattern(f.Action))
			}
		} else {
			add(`action = ?`, f.Action)
		}
	}
	if !f.Since.IsZero() {
		add(`time >= ?`, micros(f.Since))
	}
	if !f.Until.IsZero() {
		add(`time < ?`, micros(f.Until))
	}
	if f.Before > 0 {
		add(`seq < ?`, f.Before)
	}
	if f.After > 0 {
		add(`seq > ?`, f.After)
	}
	if f.Text != "" {
		op := "LIKE"
		if s.engine == Postgres {
			op = "ILIKE"
		}
		p := "%" + likePattern(f.Text, "", "") + "%"
		cols := []string{"reason", "action", "actor", "identity", "resource", "code", "policy", "rule", "req_path", "detail"}
		conds := make([]string, len(cols))
		for i, c := range cols {
			conds[i] = c + ` ` + op + ` ? ESCAPE '\'`
			args = append(args, p)
		}
		where = append(where, "("+strings.Join(conds, " OR ")+")")
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	if f.Ascending {
		q += ` ORDER BY seq ASC`
	} else {
		q += ` ORDER BY seq DESC`
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += ` LIMIT ` + strconv.Itoa(limit)
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		out []audit.Event
		sc  auditScanner
	)
	for rows.Next() {
		var e audit.Event
		if err := sc.scan(rows, &e); err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, e)
	}
	return out, s.dbErr(rows.Err())
}

// likePattern escapes LIKE's metacharacters (with '\' as the escape) and
// turns wild into any.
func likePattern(s, wild, any string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case wild != "" && string(r) == wild:
			b.WriteString(any)
		case r == '%' || r == '_' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// globPattern makes a case-sensitive SQLite GLOB where only '*' is special.
func globPattern(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '?':
			b.WriteString("[?]")
		case '[':
			b.WriteString("[[]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// AuditEventHash implements audit.Store.
func (s *Store) AuditEventHash(ctx context.Context, seq int64) (audit.Hash, bool, error) {
	var h audit.Hash
	var b []byte
	err := s.queryRow(ctx, s.db, `SELECT hash FROM audit_events WHERE seq = ?`, seq).Scan(&b)
	if err == sql.ErrNoRows {
		// Archived by retention: the stored checkpoint's word for it.
		err = s.queryRow(ctx, s.db, `SELECT c.hash FROM audit_checkpoints c WHERE c.seq = ? AND EXISTS (SELECT 1 FROM audit_anchors a WHERE a.seq >= c.seq)`, seq).Scan(&b)
	}
	if err == sql.ErrNoRows {
		return h, false, nil
	}
	if err != nil {
		return h, false, s.dbErr(err)
	}
	copy(h[:], b)
	return h, len(b) == 32, nil
}

// InsertCheckpoint implements audit.Store.
func (s *Store) InsertCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO audit_checkpoints (seq, hash, time, key_id, sig) VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`,
		c.Seq, c.Hash[:], micros(c.Time), c.KeyID, c.Sig)
	return err
}

// Checkpoints implements audit.Store.
func (s *Store) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.query(ctx, s.db, `SELECT seq, hash, time, key_id, sig FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var (
			c    audit.Checkpoint
			hash []byte
			t    int64
		)
		if err := rows.Scan(&c.Seq, &hash, &t, &c.KeyID, &c.Sig); err != nil {
			return nil, s.dbErr(err)
		}
		if copy(c.Hash[:], hash) != 32 || len(hash) != 32 {
			c.Hash[0] ^= 0xff
		}
		c.Time = fromMicros(t)
		out = append(out, c)
	}
	return out, s.dbErr(rows.Err())
}

// AuditKey implements audit.Store.
func (s *Store) AuditKey(ctx context.Context, id string) ([]byte, error) {
	var b []byte
	err := s.queryRow(ctx, s.db, `SELECT sealed FROM audit_keys WHERE id = ?`, id).Scan(&b)
	if err != nil {
		return nil, s.dbErr(err)
	}
	return b, nil
}

// InsertAuditKey implements audit.Store.
func (s *Store) InsertAuditKey(ctx context.Context, id string, sealed []byte, at time.Time) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO audit_keys (id, sealed, created_at) VALUES (?, ?, ?)`, id, sealed, micros(at))
	return err
}
