package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"warden"
	"warden/internal/credential"
)

var _ credential.Store = (*Store)(nil)

const credCols = `id, name, type, connector, identity_id, owner, description, config, rotation_sec, expires_at, version, created_at, created_by, updated_at, rotated_at, last_used_at`

func scanCredential(sc interface{ Scan(...any) error }) (*credential.Credential, error) {
	var (
		c                                 credential.Credential
		config                            string
		rotation, created, updated, rotAt int64
		exp, lastUsed                     sql.NullInt64
	)
	if err := sc.Scan(&c.ID, &c.Name, &c.Type, &c.Connector, &c.IdentityID, &c.Owner, &c.Description, &config, &rotation, &exp,
		&c.Version, &created, &c.CreatedBy, &updated, &rotAt, &lastUsed); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(config), &c.Config); err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "corrupt credential config")
	}
	c.Rotation = time.Duration(rotation) * time.Second
	c.ExpiresAt, c.LastUsedAt = fromNullMicros(exp), fromNullMicros(lastUsed)
	c.CreatedAt, c.UpdatedAt, c.RotatedAt = fromMicros(created), fromMicros(updated), fromMicros(rotAt)
	return &c, nil
}

func configJSON(m map[string]any) (string, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", warden.FieldError("config", "cannot be encoded as JSON")
	}
	return string(b), nil
}

// CreateCredential implements credential.Store.
func (s *Store) CreateCredential(ctx context.Context, c *credential.Credential, sealed credential.Sealed, rec warden.Change) error {
	cfg, err := configJSON(c.Config)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO credentials (`+credCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, c.Type, c.Connector, c.IdentityID, c.Owner, c.Description, cfg, int64(c.Rotation/time.Second), nullMicros(c.ExpiresAt),
			c.Version, micros(c.CreatedAt), c.CreatedBy, micros(c.UpdatedAt), micros(c.RotatedAt), nullMicros(c.LastUsedAt)); err != nil {
			return err
		}
		if err := s.insertSealed(ctx, tx, sealed); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

func (s *Store) insertSealed(ctx context.Context, tx *sql.Tx, v credential.Sealed) error {
	_, err := s.exec(ctx, tx, `INSERT INTO credential_versions (credential_id, version, ciphertext, created_at) VALUES (?, ?, ?, ?)`,
		v.CredentialID, v.Version, v.Ciphertext, micros(v.CreatedAt))
	return err
}

// GetCredential implements credential.Store.
func (s *Store) GetCredential(ctx context.Context, name string) (*credential.Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, s.db, `SELECT `+credCols+` FROM credentials WHERE name = ?`, name))
	return c, s.dbErr(err)
}

// ListCredentials implements credential.Store.
func (s *Store) ListCredentials(ctx context.Context, connector string) ([]*credential.Credential, error) {
	q, args := `SELECT `+credCols+` FROM credentials`, []any{}
	if connector != "" {
		q += ` WHERE connector = ?`
		args = append(args, connector)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*credential.Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, c)
	}
	return out, s.dbErr(rows.Err())
}

// UpdateCredential implements credential.Store.
func (s *Store) UpdateCredential(ctx context.Context, c *credential.Credential, expectVersion int64, sealed *credential.Sealed, rec warden.Change) error {
	cfg, err := configJSON(c.Config)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE credentials SET owner = ?, description = ?, config = ?, rotation_sec = ?, expires_at = ?, version = ?, updated_at = ?, rotated_at = ? WHERE id = ? AND version = ?`,
			c.Owner, c.Description, cfg, int64(c.Rotation/time.Second), nullMicros(c.ExpiresAt), c.Version, micros(c.UpdatedAt), micros(c.RotatedAt), c.ID, expectVersion)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return warden.Errorf(warden.CodeConflict, "credential %q was changed concurrently; retry", c.Name)
		}
		if sealed != nil {
			if err := s.insertSealed(ctx, tx, *sealed); err != nil {
				return err
			}
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// DeleteCredential implements credential.Store: the record and every
// sealed version go.
func (s *Store) DeleteCredential(ctx context.Context, id string, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM credential_versions WHERE credential_id = ?`, id); err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM credentials WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return warden.Errorf(warden.CodeNotFound, "credential not found")
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// SealedVersion implements credential.Store.
func (s *Store) SealedVersion(ctx context.Context, id string, version int64) (credential.Sealed, error) {
	v := credential.Sealed{CredentialID: id, Version: version}
	var at int64
	err := s.queryRow(ctx, s.db, `SELECT ciphertext, created_at FROM credential_versions WHERE credential_id = ? AND version = ?`, id, version).Scan(&v.Ciphertext, &at)
	v.Ciphertext, v.CreatedAt = bytes.Clone(v.Ciphertext), fromMicros(at)
	return v, s.dbErr(err)
}

// BindingFor implements credential.Store: the identity's own binding wins
// over the connector default.
func (s *Store) BindingFor(ctx context.Context, connector, identityID string) (*credential.Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, s.db, `SELECT `+credCols+` FROM credentials WHERE connector = ? AND identity_id IN (?, '') ORDER BY identity_id DESC LIMIT 1`, connector, identityID))
	return c, s.dbErr(err)
}

// TouchCredentials implements credential.Store.
func (s *Store) TouchCredentials(ctx context.Context, at map[string]int64) error {
	return s.touch(ctx, "credentials", at)
}
