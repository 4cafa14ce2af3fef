package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// AuditSinkCursor returns the last seq the named audit sink delivered,
// creating its cursor at 0 (nothing delivered) when the sink is new.
func (s *Store) AuditSinkCursor(ctx context.Context, name string) (int64, error) {
	if _, err := s.exec(ctx, s.db, `INSERT INTO audit_sink_cursors (name, seq, owner, lease_until, updated_at) VALUES (?, 0, '', 0, ?) ON CONFLICT (name) DO NOTHING`,
		name, micros(now())); err != nil {
		return 0, err
	}
	var seq int64
	if err := s.queryRow(ctx, s.db, `SELECT seq FROM audit_sink_cursors WHERE name = ?`, name).Scan(&seq); err != nil {
		return 0, s.dbErr(err)
	}
	return seq, nil
}

// LowestSinkCursor returns the audit sink cursor with the lowest seq among
// every row of audit_sink_cursors, whichever replica configured the sink
// (ties go to the first name), and ok=false when there is none. Events
// after it are not delivered by that sink yet.
func (s *Store) LowestSinkCursor(ctx context.Context) (name string, seq int64, ok bool, err error) {
	err = s.queryRow(ctx, s.db, `SELECT name, seq FROM audit_sink_cursors ORDER BY seq, name LIMIT 1`).Scan(&name, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, s.dbErr(err)
	}
	return name, seq, true, nil
}

// AdvanceAuditSinkCursor moves the named sink's cursor from from to to, only
// if it still is at from (compare-and-set), and reports whether it moved. A
// false answer means another replica moved it first: re-read it.
func (s *Store) AdvanceAuditSinkCursor(ctx context.Context, name string, from, to int64) (bool, error) {
	res, err := s.exec(ctx, s.db, `UPDATE audit_sink_cursors SET seq = ?, updated_at = ? WHERE name = ? AND seq = ?`,
		to, micros(now()), name, from)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, s.dbErr(err)
}

// ClaimAuditSink makes owner the replica delivering for the named sink until
// until, if it already is or the previous owner's lease ended before now,
// and reports whether owner holds the lease. The cursor must exist
// (AuditSinkCursor creates it).
func (s *Store) ClaimAuditSink(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	res, err := s.exec(ctx, s.db, `UPDATE audit_sink_cursors SET owner = ?, lease_until = ? WHERE name = ? AND (owner = ? OR lease_until < ?)`,
		owner, micros(until), name, owner, micros(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, s.dbErr(err)
}

// ReleaseAuditSink ends owner's lease on the named sink, so another replica
// can take over at once (at shutdown).
func (s *Store) ReleaseAuditSink(ctx context.Context, name, owner string) error {
	_, err := s.exec(ctx, s.db, `UPDATE audit_sink_cursors SET owner = '', lease_until = 0 WHERE name = ? AND owner = ?`, name, owner)
	return err
}
