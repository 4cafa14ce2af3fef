package store

import (
	"context"
	"database/sql"
	"time"

	"warden"
	"warden/internal/policy"
)

var _ policy.Store = (*Store)(nil)

// PutPolicy implements policy.Store: the next version number is taken under
// the transaction's write lock, so two writers never share one.
func (s *Store) PutPolicy(ctx context.Context, p policy.Stored, rec warden.Change) (int64, error) {
	var version int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var cur sql.NullInt64
		q := `SELECT MAX(version) FROM policy_versions WHERE name = ?`
		if s.engine == Postgres {
			// Serialise writers of one name: lock on a hash of it.
			if _, err := s.exec(ctx, tx, `SELECT pg_advisory_xact_lock(hashtext(?))`, "policy:"+p.Name); err != nil {
				return err
			}
		}
		if err := s.queryRow(ctx, tx, q, p.Name).Scan(&cur); err != nil {
			return s.dbErr(err)
		}
		version = cur.Int64 + 1
		if _, err := s.exec(ctx, tx, `INSERT INTO policy_versions (name, version, document, content_type, deleted, created_at, created_by) VALUES (?, ?, ?, ?, 0, ?, ?)`,
			p.Name, version, string(p.Document), p.ContentType, micros(p.UpdatedAt), p.UpdatedBy); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM policies WHERE name = ?`, p.Name); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO policies (name, version, document, content_type, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)`,
			p.Name, version, string(p.Document), p.ContentType, micros(p.UpdatedAt), p.UpdatedBy); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
	return version, err
}

const policyCols = `name, version, document, content_type, updated_at, updated_by`

func scanPolicy(sc interface{ Scan(...any) error }) (policy.Stored, error) {
	var p policy.Stored
	var doc string
	var at int64
	err := sc.Scan(&p.Name, &p.Version, &doc, &p.ContentType, &at, &p.UpdatedBy)
	p.Document, p.UpdatedAt = []byte(doc), fromMicros(at)
	return p, err
}

// GetPolicy implements policy.Store.
func (s *Store) GetPolicy(ctx context.Context, name string) (policy.Stored, error) {
	p, err := scanPolicy(s.queryRow(ctx, s.db, `SELECT `+policyCols+` FROM policies WHERE name = ?`, name))
	return p, s.dbErr(err)
}

// ListPolicies implements policy.Store.
func (s *Store) ListPolicies(ctx context.Context) ([]policy.Stored, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+policyCols+` FROM policies ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []policy.Stored
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, p)
	}
	return out, s.dbErr(rows.Err())
}

// DeletePolicy implements policy.Store.
func (s *Store) DeletePolicy(ctx context.Context, name, actor string, at time.Time, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanPolicy(s.queryRow(ctx, tx, `SELECT `+policyCols+` FROM policies WHERE name = ?`, name))
		if err != nil {
			return s.dbErr(err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM policies WHERE name = ?`, name); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO policy_versions (name, version, document, content_type, deleted, created_at, created_by) VALUES (?, ?, '', ?, 1, ?, ?)`,
			name, cur.Version+1, cur.ContentType, micros(at), actor); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// PolicyVersions implements policy.Store, oldest first.
func (s *Store) PolicyVersions(ctx context.Context, name string) ([]policy.Stored, error) {
	rows, err := s.query(ctx, s.db, `SELECT name, version, document, content_type, created_at, created_by, deleted FROM policy_versions WHERE name = ? ORDER BY version`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []policy.Stored
	for rows.Next() {
		var p policy.Stored
		var doc string
		var at, deleted int64
		if err := rows.Scan(&p.Name, &p.Version, &doc, &p.ContentType, &at, &p.UpdatedBy, &deleted); err != nil {
			return nil, s.dbErr(err)
		}
		p.Document, p.UpdatedAt, p.Deleted = []byte(doc), fromMicros(at), deleted != 0
		out = append(out, p)
	}
	return out, s.dbErr(rows.Err())
}
