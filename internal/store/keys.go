package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"warden"
	"warden/internal/authn"
)

var _ authn.Store = (*Store)(nil)

const keyCols = `id, identity_id, hash, hint, created_at, created_by, expires_at, revoked_at, last_used_at`

func scanKey(sc interface{ Scan(...any) error }) (*authn.Key, error) {
	var (
		k                     authn.Key
		created               int64
		exp, revoked, lastUse sql.NullInt64
	)
	if err := sc.Scan(&k.ID, &k.IdentityID, &k.Hash, &k.Hint, &created, &k.CreatedBy, &exp, &revoked, &lastUse); err != nil {
		return nil, err
	}
	k.CreatedAt = fromMicros(created)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromNullMicros(exp), fromNullMicros(revoked), fromNullMicros(lastUse)
	return &k, nil
}

// CreateAPIKey implements authn.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k *authn.Key, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO api_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.IdentityID, k.Hash, k.Hint, micros(k.CreatedAt), k.CreatedBy, nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), nullMicros(k.LastUsedAt)); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// APIKeyByHash implements authn.Store.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (*authn.Key, error) {
	k, err := scanKey(s.queryRow(ctx, s.db, `SELECT `+keyCols+` FROM api_keys WHERE hash = ?`, hash))
	return k, s.dbErr(err)
}

// ListAPIKeys implements authn.Store, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, identityID string) ([]*authn.Key, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+keyCols+` FROM api_keys WHERE identity_id = ? ORDER BY created_at, id`, identityID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*authn.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, k)
	}
	return out, s.dbErr(rows.Err())
}

// RevokeAPIKey implements authn.Store. Revoking an already revoked key keeps
// the first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, identityID, keyID string, at time.Time, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND identity_id = ?`, micros(at), keyID, identityID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return warden.Errorf(warden.CodeNotFound, "key %q not found for this identity", keyID)
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// RevokeIdentityKeys implements authn.Store.
func (s *Store) RevokeIdentityKeys(ctx context.Context, identityID string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE api_keys SET revoked_at = ? WHERE identity_id = ? AND revoked_at IS NULL`, micros(at), identityID)
	return err
}

const adminCols = `id, name, subject, roles, hash, hint, created_at, created_by, expires_at, revoked_at, last_used_at`

func scanAdmin(sc interface{ Scan(...any) error }) (*authn.AdminToken, error) {
	var (
		t                     authn.AdminToken
		roles                 string
		created               int64
		exp, revoked, lastUse sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Subject, &roles, &t.Hash, &t.Hint, &created, &t.CreatedBy, &exp, &revoked, &lastUse); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(roles), &t.Roles); err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "corrupt roles")
	}
	t.CreatedAt = fromMicros(created)
	t.ExpiresAt, t.RevokedAt, t.LastUsedAt = fromNullMicros(exp), fromNullMicros(revoked), fromNullMicros(lastUse)
	return &t, nil
}

// CreateAdminToken implements authn.Store.
func (s *Store) CreateAdminToken(ctx context.Context, t *authn.AdminToken, rec warden.Change) error {
	roles, _ := json.Marshal(t.Roles)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO admin_tokens (`+adminCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.Subject, string(roles), t.Hash, t.Hint, micros(t.CreatedAt), t.CreatedBy, nullMicros(t.ExpiresAt), nullMicros(t.RevokedAt), nullMicros(t.LastUsedAt)); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// AdminTokenByHash implements authn.Store.
func (s *Store) AdminTokenByHash(ctx context.Context, hash string) (*authn.AdminToken, error) {
	t, err := scanAdmin(s.queryRow(ctx, s.db, `SELECT `+adminCols+` FROM admin_tokens WHERE hash = ?`, hash))
	return t, s.dbErr(err)
}

// ListAdminTokens implements authn.Store.
func (s *Store) ListAdminTokens(ctx context.Context) ([]*authn.AdminToken, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+adminCols+` FROM admin_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*authn.AdminToken
	for rows.Next() {
		t, err := scanAdmin(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, t)
	}
	return out, s.dbErr(rows.Err())
}

// RevokeAdminToken implements authn.Store.
func (s *Store) RevokeAdminToken(ctx context.Context, id string, at time.Time, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return warden.Errorf(warden.CodeNotFound, "admin token %q not found", id)
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// RevokeTokenID implements authn.Store; revoking twice is a no-op.
func (s *Store) RevokeTokenID(ctx context.Context, jti string, expiresAt, at time.Time) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES (?, ?, ?) ON CONFLICT (jti) DO NOTHING`, jti, micros(expiresAt), micros(at))
	return err
}

// RevocationState implements authn.Store. Expired jtis are pruned first:
// an expired token fails verification anyway.
func (s *Store) RevocationState(ctx context.Context, now time.Time) (authn.Revocations, error) {
	var r authn.Revocations
	if _, err := s.exec(ctx, s.db, `DELETE FROM revoked_tokens WHERE expires_at < ?`, micros(now.Add(-time.Hour))); err != nil {
		return r, err
	}
	var err error
	if r.Keys, err = s.strings(ctx, `SELECT id FROM api_keys WHERE revoked_at IS NOT NULL`); err != nil {
		return r, err
	}
	if r.AdminTokens, err = s.strings(ctx, `SELECT id FROM admin_tokens WHERE revoked_at IS NOT NULL`); err != nil {
		return r, err
	}
	r.TokenIDs, err = s.strings(ctx, `SELECT jti FROM revoked_tokens`)
	return r, err
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, v)
	}
	return out, s.dbErr(rows.Err())
}

// TouchAPIKeys implements authn.Store.
func (s *Store) TouchAPIKeys(ctx context.Context, at map[string]int64) error {
	return s.touch(ctx, "api_keys", at)
}

// TouchAdminTokens implements authn.Store.
func (s *Store) TouchAdminTokens(ctx context.Context, at map[string]int64) error {
	return s.touch(ctx, "admin_tokens", at)
}

func (s *Store) touch(ctx context.Context, table string, at map[string]int64) error {
	if len(at) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for id, t := range at {
			if _, err := s.exec(ctx, tx, `UPDATE `+table+` SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, t, id, t); err != nil {
				return err
			}
		}
		return nil
	})
}
