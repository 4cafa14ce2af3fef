package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"warden"
)

// recordChange writes an admin change inside the caller's transaction, so a
// change and its record commit or fail together.
func (s *Store) recordChange(ctx context.Context, tx *sql.Tx, c warden.Change) error {
	if c.ID == "" {
		return warden.Errorf(warden.CodeInternal, "change record without id")
	}
	s.changesGen.Add(1)
	detail := []byte("{}")
	if c.Detail != nil {
		b, err := json.Marshal(c.Detail)
		if err != nil {
			return warden.Wrap(err, warden.CodeInternal, "cannot encode change detail")
		}
		detail = b
	}
	_, err := s.exec(ctx, tx, `INSERT INTO changes (id, at, actor, action, target_kind, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.ID, micros(c.At), c.Actor, c.Action, c.TargetKind, c.Target, string(detail))
	return err
}

// ListChanges returns admin changes newest first, at most limit, optionally
// for one target.
func (s *Store) ListChanges(ctx context.Context, target string, limit int) ([]warden.Change, error) {
	q := `SELECT id, at, actor, action, target_kind, target, detail FROM changes`
	var args []any
	if target != "" {
		q += ` WHERE target = ?`
		args = append(args, target)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []warden.Change
	for rows.Next() {
		var c warden.Change
		var at int64
		var detail string
		if err := rows.Scan(&c.ID, &at, &c.Actor, &c.Action, &c.TargetKind, &c.Target, &detail); err != nil {
			return nil, s.dbErr(err)
		}
		c.At = time.UnixMicro(at).UTC()
		_ = json.Unmarshal([]byte(detail), &c.Detail)
		out = append(out, c)
	}
	return out, s.dbErr(rows.Err())
}
