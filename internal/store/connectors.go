package store

import (
	"context"
	"database/sql"

	"warden"
	"warden/internal/connector"
)

var _ connector.Store = (*Store)(nil)

// PutConnector implements connector.Store.
func (s *Store) PutConnector(ctx context.Context, c connector.Stored, rec warden.Change) (int64, error) {
	var version int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.engine == Postgres {
			if _, err := s.exec(ctx, tx, `SELECT pg_advisory_xact_lock(hashtext(?))`, "connector:"+c.Name); err != nil {
				return err
			}
		}
		var cur sql.NullInt64
		if err := s.queryRow(ctx, tx, `SELECT version FROM connectors WHERE name = ?`, c.Name).Scan(&cur); err != nil && err != sql.ErrNoRows {
			return s.dbErr(err)
		}
		version = cur.Int64 + 1
		if _, err := s.exec(ctx, tx, `DELETE FROM connectors WHERE name = ?`, c.Name); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO connectors (name, version, document, content_type, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)`,
			c.Name, version, string(c.Document), c.ContentType, micros(c.UpdatedAt), c.UpdatedBy); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
	return version, err
}

func scanConnector(sc interface{ Scan(...any) error }) (connector.Stored, error) {
	var c connector.Stored
	var doc string
	var at int64
	err := sc.Scan(&c.Name, &c.Version, &doc, &c.ContentType, &at, &c.UpdatedBy)
	c.Document, c.UpdatedAt = []byte(doc), fromMicros(at)
	return c, err
}

// GetConnector implements connector.Store.
func (s *Store) GetConnector(ctx context.Context, name string) (connector.Stored, error) {
	c, err := scanConnector(s.queryRow(ctx, s.db, `SELECT name, version, document, content_type, updated_at, updated_by FROM connectors WHERE name = ?`, name))
	return c, s.dbErr(err)
}

// ListConnectors implements connector.Store.
func (s *Store) ListConnectors(ctx context.Context) ([]connector.Stored, error) {
	rows, err := s.query(ctx, s.db, `SELECT name, version, document, content_type, updated_at, updated_by FROM connectors ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []connector.Stored
	for rows.Next() {
		c, err := scanConnector(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, c)
	}
	return out, s.dbErr(rows.Err())
}

// DeleteConnector implements connector.Store.
func (s *Store) DeleteConnector(ctx context.Context, name string, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM connectors WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return warden.Errorf(warden.CodeNotFound, "connector %q not found", name)
		}
		return s.recordChange(ctx, tx, rec)
	})
}
