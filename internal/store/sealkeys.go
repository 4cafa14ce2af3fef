package store

import (
	"bytes"
	"context"
	"database/sql"

	"warden"
	"warden/internal/seal"
)

var _ seal.KeyStore = (*Store)(nil)

// ListKeys implements seal.KeyStore.
func (s *Store) ListKeys(ctx context.Context) ([]seal.KeyRecord, error) {
	rows, err := s.query(ctx, s.db, `SELECT id, purpose, wrapped, created_at FROM seal_keys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []seal.KeyRecord
	for rows.Next() {
		var r seal.KeyRecord
		var created int64
		if err := rows.Scan(&r.ID, &r.Purpose, &r.Wrapped, &created); err != nil {
			return nil, s.dbErr(err)
		}
		r.Wrapped = bytes.Clone(r.Wrapped)
		r.CreatedAt = fromMicros(created)
		out = append(out, r)
	}
	return out, s.dbErr(rows.Err())
}

// InsertKey implements seal.KeyStore: a duplicate id is a conflict.
func (s *Store) InsertKey(ctx context.Context, r seal.KeyRecord) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO seal_keys (id, purpose, wrapped, created_at, state) VALUES (?, ?, ?, ?, 'active')`,
		r.ID, r.Purpose, r.Wrapped, micros(r.CreatedAt))
	return err
}

// ReplaceWrapped implements seal.KeyStore: compare-and-swap of every item in
// one transaction, all or none.
func (s *Store) ReplaceWrapped(ctx context.Context, items []seal.Rewrap) error {
	if len(items) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, it := range items {
			res, err := s.exec(ctx, tx, `UPDATE seal_keys SET wrapped = ? WHERE id = ? AND wrapped = ?`, it.New, it.ID, it.Old)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return s.dbErr(err)
			} else if n != 1 {
				return warden.Errorf(warden.CodeConflict, "key %q changed or missing during rewrap", it.ID)
			}
		}
		return nil
	})
}
