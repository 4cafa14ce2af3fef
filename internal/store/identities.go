package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"strings"

	"warden"
	"warden/internal/identity"
)

var _ identity.Store = (*Store)(nil)

const identityCols = `id, name, type, owner, description, environment, labels, status, status_reason, status_actor, status_changed_at, created_at, updated_at, last_used_at, version`

func scanIdentity(sc interface{ Scan(...any) error }) (*identity.Identity, error) {
	var (
		id                         identity.Identity
		labels                     string
		statusAt, created, updated int64
		lastUsed                   sql.NullInt64
	)
	if err := sc.Scan(&id.ID, &id.Name, &id.Type, &id.Owner, &id.Description, &id.Environment, &labels,
		&id.Status, &id.StatusReason, &id.StatusActor, &statusAt, &created, &updated, &lastUsed, &id.Version); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(labels), &id.Labels); err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "corrupt labels")
	}
	if id.Labels == nil {
		id.Labels = map[string]string{}
	}
	id.StatusChangedAt, id.CreatedAt, id.UpdatedAt = fromMicros(statusAt), fromMicros(created), fromMicros(updated)
	id.LastUsedAt = fromNullMicros(lastUsed)
	return &id, nil
}

func labelsJSON(l map[string]string) string {
	if l == nil {
		return "{}"
	}
	b, _ := json.Marshal(l) // map[string]string always encodes
	return string(b)
}

// CreateIdentity implements identity.Store.
func (s *Store) CreateIdentity(ctx context.Context, id *identity.Identity, first identity.StatusChange, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO identities (`+identityCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id.ID, id.Name, id.Type, id.Owner, id.Description, id.Environment, labelsJSON(id.Labels),
			id.Status, id.StatusReason, id.StatusActor, micros(id.StatusChangedAt), micros(id.CreatedAt), micros(id.UpdatedAt), nullMicros(id.LastUsedAt), id.Version); err != nil {
			return err
		}
		if err := s.insertStatus(ctx, tx, id.ID, first); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, rec)
	})
}

func (s *Store) insertStatus(ctx context.Context, tx *sql.Tx, identityID string, c identity.StatusChange) error {
	_, err := s.exec(ctx, tx, `INSERT INTO identity_status_history (identity_id, status, reason, actor, at) VALUES (?, ?, ?, ?, ?)`,
		identityID, c.Status, c.Reason, c.Actor, micros(c.At))
	return err
}

// GetIdentity implements identity.Store: ref is an id (nhi_...) or a name.
func (s *Store) GetIdentity(ctx context.Context, ref string) (*identity.Identity, error) {
	col := "name"
	if warden.HasPrefix(ref, warden.PrefixIdentity) {
		col = "id"
	}
	id, err := scanIdentity(s.queryRow(ctx, s.db, `SELECT `+identityCols+` FROM identities WHERE `+col+` = ?`, ref))
	if err != nil {
		return nil, s.dbErr(err)
	}
	return id, nil
}

// ListIdentities implements identity.Store. Pages are ordered by id; the
// cursor is the last id of the previous page, base64-encoded.
func (s *Store) ListIdentities(ctx context.Context, f identity.Filter) ([]*identity.Identity, string, error) {
	var (
		where []string
		args  []any
	)
	if f.Type != "" {
		where, args = append(where, "type = ?"), append(args, f.Type)
	}
	if f.Owner != "" {
		where, args = append(where, "owner = ?"), append(args, f.Owner)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	after := ""
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || !warden.HasPrefix(string(b), warden.PrefixIdentity) {
			return nil, "", warden.FieldError("cursor", "is not a cursor this server issued")
		}
		after = string(b)
	}
	q := `SELECT ` + identityCols + ` FROM identities WHERE ` + strings.Join(append(where, "id > ?"), " AND ") + ` ORDER BY id LIMIT ?`
	// Label filters are applied here rather than in SQL (labels are a JSON
	// column and the engines' JSON operators differ), so read in chunks until
	// the page is full.
	limit := f.Limit
	chunk := limit + 1
	if len(f.Labels) > 0 {
		chunk = 500
	}
	var out []*identity.Identity
	for {
		rows, err := s.query(ctx, s.db, q, append(append([]any(nil), args...), after, chunk)...)
		if err != nil {
			return nil, "", err
		}
		n := 0
		for rows.Next() {
			id, err := scanIdentity(rows)
			if err != nil {
				rows.Close()
				return nil, "", s.dbErr(err)
			}
			n++
			after = id.ID
			if matchLabels(id.Labels, f.Labels) {
				out = append(out, id)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, "", s.dbErr(err)
		}
		if len(out) > limit || n < chunk {
			break
		}
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(out[limit-1].ID))
	}
	return out, next, nil
}

func matchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// UpdateIdentity implements identity.Store with optimistic concurrency.
func (s *Store) UpdateIdentity(ctx context.Context, id *identity.Identity, expectVersion int64, change *identity.StatusChange, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE identities SET type = ?, owner = ?, description = ?, environment = ?, labels = ?, status = ?, status_reason = ?, status_actor = ?, status_changed_at = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?`,
			id.Type, id.Owner, id.Description, id.Environment, labelsJSON(id.Labels), id.Status, id.StatusReason, id.StatusActor,
			micros(id.StatusChangedAt), micros(id.UpdatedAt), id.Version, id.ID, expectVersion)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return s.dbErr(err)
		} else if n == 0 {
			var exists int
			if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM identities WHERE id = ?`, id.ID).Scan(&exists); err != nil {
				return s.dbErr(err)
			}
			if exists == 0 {
				return warden.Errorf(warden.CodeNotFound, "identity %q not found", id.ID)
			}
			return warden.Errorf(warden.CodeConflict, "identity %q was changed concurrently", id.ID)
		}
		if change != nil {
			if err := s.insertStatus(ctx, tx, id.ID, *change); err != nil {
				return err
			}
		}
		return s.recordChange(ctx, tx, rec)
	})
}

// StatusHistory implements identity.Store, oldest first.
func (s *Store) StatusHistory(ctx context.Context, identityID string) ([]identity.StatusChange, error) {
	rows, err := s.query(ctx, s.db, `SELECT status, reason, actor, at FROM identity_status_history WHERE identity_id = ? ORDER BY seq`, identityID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.StatusChange
	for rows.Next() {
		var c identity.StatusChange
		var at int64
		if err := rows.Scan(&c.Status, &c.Reason, &c.Actor, &at); err != nil {
			return nil, s.dbErr(err)
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	return out, s.dbErr(rows.Err())
}

// AllIdentities implements identity.Store.
func (s *Store) AllIdentities(ctx context.Context) ([]*identity.Identity, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+identityCols+` FROM identities ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*identity.Identity
	for rows.Next() {
		id, err := scanIdentity(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, id)
	}
	return out, s.dbErr(rows.Err())
}

// TouchIdentities implements authn.Store (batched off the hot path).
func (s *Store) TouchIdentities(ctx context.Context, at map[string]int64) error {
	return s.touch(ctx, "identities", at)
}
