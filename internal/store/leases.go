package store

import (
	"bytes"
	"context"
	"database/sql"
	"time"

	"warden"
	"warden/internal/credential"
)

var _ credential.LeaseStore = (*Store)(nil)

const leaseCols = `id, credential_id, connector, identity_id, role_name, password, created_at, expires_at, ended_at, end_reason, dropped_at`

func scanLease(sc interface{ Scan(...any) error }) (*credential.LeaseRecord, error) {
	var (
		l                credential.LeaseRecord
		created, expires int64
		ended, dropped   sql.NullInt64
	)
	if err := sc.Scan(&l.ID, &l.CredentialID, &l.Connector, &l.IdentityID, &l.Role, &l.Password, &created, &expires, &ended, &l.EndReason, &dropped); err != nil {
		return nil, err
	}
	l.Password = bytes.Clone(l.Password)
	l.CreatedAt, l.ExpiresAt = fromMicros(created), fromMicros(expires)
	l.EndedAt, l.DroppedAt = fromNullMicros(ended), fromNullMicros(dropped)
	return &l, nil
}

// CreateLease implements credential.LeaseStore.
func (s *Store) CreateLease(ctx context.Context, l *credential.LeaseRecord, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO credential_leases (`+leaseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			l.ID, l.CredentialID, l.Connector, l.IdentityID, l.Role, l.Password, micros(l.CreatedAt), micros(l.ExpiresAt),
			nullMicros(l.EndedAt), l.EndReason, nullMicros(l.DroppedAt)); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// GetLease implements credential.LeaseStore.
func (s *Store) GetLease(ctx context.Context, id string) (*credential.LeaseRecord, error) {
	l, err := scanLease(s.queryRow(ctx, s.db, `SELECT `+leaseCols+` FROM credential_leases WHERE id = ?`, id))
	return l, s.dbErr(err)
}

// ActiveLease implements credential.LeaseStore.
func (s *Store) ActiveLease(ctx context.Context, credentialID, identityID string, notBefore time.Time) (*credential.LeaseRecord, error) {
	l, err := scanLease(s.queryRow(ctx, s.db, `SELECT `+leaseCols+` FROM credential_leases
		WHERE credential_id = ? AND identity_id = ? AND ended_at IS NULL AND dropped_at IS NULL AND expires_at > ?
		ORDER BY expires_at DESC LIMIT 1`, credentialID, identityID, micros(notBefore)))
	return l, s.dbErr(err)
}

// ListLeases implements credential.LeaseStore: newest first.
func (s *Store) ListLeases(ctx context.Context, f credential.LeaseFilter) ([]*credential.LeaseRecord, error) {
	q, args := `SELECT `+leaseCols+` FROM credential_leases WHERE 1 = 1`, []any{}
	if f.IdentityID != "" {
		q += ` AND identity_id = ?`
		args = append(args, f.IdentityID)
	}
	if f.CredentialID != "" {
		q += ` AND credential_id = ?`
		args = append(args, f.CredentialID)
	}
	if !f.ActiveAt.IsZero() {
		q += ` AND ended_at IS NULL AND dropped_at IS NULL AND expires_at > ?`
		args = append(args, micros(f.ActiveAt))
	}
	q += ` ORDER BY created_at DESC, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*credential.LeaseRecord
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, l)
	}
	return out, s.dbErr(rows.Err())
}

// EndLease implements credential.LeaseStore.
func (s *Store) EndLease(ctx context.Context, id string, at time.Time, reason string, rec *warden.Change) (bool, error) {
	changed := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE credential_leases SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL AND dropped_at IS NULL`,
			micros(at), reason, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		changed = n > 0
		if !changed || rec == nil {
			return nil
		}
		return s.recordChange(ctx, tx, *rec)
	})
	return changed, err
}

// PendingDrops implements credential.LeaseStore.
func (s *Store) PendingDrops(ctx context.Context, now time.Time, limit int) ([]*credential.LeaseRecord, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+leaseCols+` FROM credential_leases
		WHERE dropped_at IS NULL AND (ended_at IS NOT NULL OR expires_at <= ?) ORDER BY expires_at LIMIT ?`, micros(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*credential.LeaseRecord
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, l)
	}
	return out, s.dbErr(rows.Err())
}

// MarkLeaseDropped implements credential.LeaseStore.
func (s *Store) MarkLeaseDropped(ctx context.Context, id string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE credential_leases SET dropped_at = ?, password = ?,
		end_reason = CASE WHEN ended_at IS NULL THEN 'expired' ELSE end_reason END, ended_at = COALESCE(ended_at, expires_at) WHERE id = ?`,
		micros(at), []byte{}, id)
	return err
}

// DeleteLease implements credential.LeaseStore.
func (s *Store) DeleteLease(ctx context.Context, id string) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM credential_leases WHERE id = ?`, id)
	return err
}
