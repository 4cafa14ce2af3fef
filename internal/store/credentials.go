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

const credCols = `id, name, type, connector, identity_id, owner, description, config, rotation_sec, expires_at, version, created_at, created_by, updated_at, rotated_at, last_used_at, grace_sec`

func scanCredential(sc interface{ Scan(...any) error }) (*credential.Credential, error) {
	var (
		c                                 credential.Credential
		config                            string
		rotation, created, updated, rotAt int64
		grace                             int64
		exp, lastUsed                     sql.NullInt64
	)
	if err := sc.Scan(&c.ID, &c.Name, &c.Type, &c.Connector, &c.IdentityID, &c.Owner, &c.Description, &config, &rotation, &exp,
		&c.Version, &created, &c.CreatedBy, &updated, &rotAt, &lastUsed, &grace); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(config), &c.Config); err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "corrupt credential config")
	}
	c.Rotation = time.Duration(rotation) * time.Second
	c.RotationGrace = time.Duration(grace) * time.Second
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
		if _, err := s.exec(ctx, tx, `INSERT INTO credentials (`+credCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, c.Type, c.Connector, c.IdentityID, c.Owner, c.Description, cfg, int64(c.Rotation/time.Second), nullMicros(c.ExpiresAt),
			c.Version, micros(c.CreatedAt), c.CreatedBy, micros(c.UpdatedAt), micros(c.RotatedAt), nullMicros(c.LastUsedAt), int64(c.RotationGrace/time.Second)); err != nil {
			return err
		}
		if err := s.insertSealed(ctx, tx, sealed); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// insertSealed stores a version and, as v.PreviousRetireAt asks, schedules
// the retirement of the earlier versions not yet scheduled.
func (s *Store) insertSealed(ctx context.Context, tx *sql.Tx, v credential.Sealed) error {
	if _, err := s.exec(ctx, tx, `INSERT INTO credential_versions (credential_id, version, ciphertext, created_at) VALUES (?, ?, ?, ?)`,
		v.CredentialID, v.Version, v.Ciphertext, micros(v.CreatedAt)); err != nil {
		return err
	}
	if v.PreviousRetireAt.IsZero() {
		return nil
	}
	_, err := s.exec(ctx, tx, `UPDATE credential_versions SET retire_at = ? WHERE credential_id = ? AND version < ? AND retire_at IS NULL`,
		micros(v.PreviousRetireAt), v.CredentialID, v.Version)
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
		res, err := s.exec(ctx, tx, `UPDATE credentials SET owner = ?, description = ?, config = ?, rotation_sec = ?, grace_sec = ?, expires_at = ?, version = ?, updated_at = ?, rotated_at = ? WHERE id = ? AND version = ?`,
			c.Owner, c.Description, cfg, int64(c.Rotation/time.Second), int64(c.RotationGrace/time.Second), nullMicros(c.ExpiresAt), c.Version, micros(c.UpdatedAt), micros(c.RotatedAt), c.ID, expectVersion)
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

// SealedVersion implements credential.Store. A retired version is
// CodeNotFound: its ciphertext is gone.
func (s *Store) SealedVersion(ctx context.Context, id string, version int64) (credential.Sealed, error) {
	v := credential.Sealed{CredentialID: id, Version: version}
	var (
		at                int64
		retire, retiredAt sql.NullInt64
	)
	err := s.queryRow(ctx, s.db, `SELECT ciphertext, created_at, retire_at, retired_at FROM credential_versions WHERE credential_id = ? AND version = ?`, id, version).
		Scan(&v.Ciphertext, &at, &retire, &retiredAt)
	if err != nil {
		return v, s.dbErr(err)
	}
	if retiredAt.Valid {
		return credential.Sealed{}, warden.Errorf(warden.CodeNotFound, "version %d is retired", version)
	}
	v.Ciphertext, v.CreatedAt, v.RetireAt = bytes.Clone(v.Ciphertext), fromMicros(at), fromNullMicros(retire)
	return v, nil
}

// ListVersions implements credential.Store: every version, oldest first,
// without ciphertext.
func (s *Store) ListVersions(ctx context.Context, id string) ([]credential.Sealed, error) {
	rows, err := s.query(ctx, s.db, `SELECT version, created_at, retire_at, retired_at FROM credential_versions WHERE credential_id = ? ORDER BY version`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []credential.Sealed
	for rows.Next() {
		v := credential.Sealed{CredentialID: id}
		var (
			at                int64
			retire, retiredAt sql.NullInt64
		)
		if err := rows.Scan(&v.Version, &at, &retire, &retiredAt); err != nil {
			return nil, s.dbErr(err)
		}
		v.CreatedAt, v.RetireAt, v.RetiredAt = fromMicros(at), fromNullMicros(retire), fromNullMicros(retiredAt)
		out = append(out, v)
	}
	return out, s.dbErr(rows.Err())
}

// RetireVersions implements credential.Store: versions whose retire time
// has come lose their ciphertext (the row stays as history).
func (s *Store) RetireVersions(ctx context.Context, now time.Time) (int, error) {
	res, err := s.exec(ctx, s.db, `UPDATE credential_versions SET ciphertext = ?, retired_at = ? WHERE retire_at IS NOT NULL AND retire_at <= ? AND retired_at IS NULL`,
		[]byte{}, micros(now), micros(now))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// CredentialByID implements credential.Store.
func (s *Store) CredentialByID(ctx context.Context, id string) (*credential.Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, s.db, `SELECT `+credCols+` FROM credentials WHERE id = ?`, id))
	return c, s.dbErr(err)
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
