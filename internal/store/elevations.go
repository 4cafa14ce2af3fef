package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"warden"
	"warden/internal/elevation"
)

var _ elevation.Store = (*Store)(nil)

const elevationCols = `id, identity_id, identity_name, owner, actions, resources, duration_sec, reason, requested_by, status, created_at, decided_at, decided_by, comment, expires_at, revoked_at, revoked_by`

func scanElevation(sc interface{ Scan(...any) error }) (*elevation.Elevation, error) {
	var (
		e                   elevation.Elevation
		actions, resources  string
		durSec, created     int64
		decided, exp, revAt sql.NullInt64
	)
	if err := sc.Scan(&e.ID, &e.IdentityID, &e.IdentityName, &e.Owner, &actions, &resources, &durSec, &e.Reason, &e.RequestedBy, &e.Status,
		&created, &decided, &e.DecidedBy, &e.Comment, &exp, &revAt, &e.RevokedBy); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(actions), &e.Actions)
	_ = json.Unmarshal([]byte(resources), &e.Resources)
	e.Duration = time.Duration(durSec) * time.Second
	e.CreatedAt = fromMicros(created)
	e.DecidedAt, e.ExpiresAt, e.RevokedAt = fromNullMicros(decided), fromNullMicros(exp), fromNullMicros(revAt)
	return &e, nil
}

// CreateElevation implements elevation.Store.
func (s *Store) CreateElevation(ctx context.Context, e *elevation.Elevation, rec warden.Change) error {
	actions, _ := json.Marshal(e.Actions)
	resources, _ := json.Marshal(e.Resources)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO elevations (`+elevationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.IdentityID, e.IdentityName, e.Owner, string(actions), string(resources), int64(e.Duration/time.Second), e.Reason, e.RequestedBy, e.Status,
			micros(e.CreatedAt), nullMicros(e.DecidedAt), e.DecidedBy, e.Comment, nullMicros(e.ExpiresAt), nullMicros(e.RevokedAt), e.RevokedBy); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// GetElevation implements elevation.Store.
func (s *Store) GetElevation(ctx context.Context, id string) (*elevation.Elevation, error) {
	e, err := scanElevation(s.queryRow(ctx, s.db, `SELECT `+elevationCols+` FROM elevations WHERE id = ?`, id))
	return e, s.dbErr(err)
}

// ListElevations implements elevation.Store, newest first (at most 1000).
func (s *Store) ListElevations(ctx context.Context, status, identityID string) ([]*elevation.Elevation, error) {
	q, args := `SELECT `+elevationCols+` FROM elevations WHERE 1 = 1`, []any{}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	if identityID != "" {
		q += ` AND identity_id = ?`
		args = append(args, identityID)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY created_at DESC LIMIT 1000`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*elevation.Elevation
	for rows.Next() {
		e, err := scanElevation(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, e)
	}
	return out, s.dbErr(rows.Err())
}

// TransitionElevation implements elevation.Store (compare-and-set on
// status).
func (s *Store) TransitionElevation(ctx context.Context, e *elevation.Elevation, from string, rec *warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE elevations SET status = ?, decided_at = ?, decided_by = ?, comment = ?, expires_at = ?, revoked_at = ?, revoked_by = ? WHERE id = ? AND status = ?`,
			e.Status, nullMicros(e.DecidedAt), e.DecidedBy, e.Comment, nullMicros(e.ExpiresAt), nullMicros(e.RevokedAt), e.RevokedBy, e.ID, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return warden.Errorf(warden.CodeConflict, "elevation %s changed concurrently", e.ID)
		}
		if rec != nil {
			return s.recordChange(ctx, tx, *rec)
		}
		return nil
	})
}
