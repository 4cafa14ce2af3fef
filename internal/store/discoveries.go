package store

import (
	"context"
	"database/sql"
	"encoding/json"

	"warden"
	"warden/internal/discovery"
)

var _ discovery.InventoryStore = (*Store)(nil)

const discoveryCols = `id, fingerprint, rule, kind, preview, verified, status, identity_id, owner, note, credential_id, first_seen, last_seen, locations, updated_by`

func scanDiscovery(sc interface{ Scan(...any) error }) (*discovery.Discovery, error) {
	var (
		d           discovery.Discovery
		verified    int64
		first, last int64
		locations   string
	)
	if err := sc.Scan(&d.ID, &d.Fingerprint, &d.Rule, &d.Kind, &d.Preview, &verified, &d.Status, &d.IdentityID, &d.Owner, &d.Note,
		&d.CredentialID, &first, &last, &locations, &d.UpdatedBy); err != nil {
		return nil, err
	}
	d.Verified = verified != 0
	d.FirstSeen, d.LastSeen = fromMicros(first), fromMicros(last)
	_ = json.Unmarshal([]byte(locations), &d.Locations)
	return &d, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// UpsertDiscovery implements discovery.InventoryStore: inserted when the
// fingerprint is new, else merged under the row's lock.
func (s *Store) UpsertDiscovery(ctx context.Context, d *discovery.Discovery) (bool, error) {
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		q := `SELECT ` + discoveryCols + ` FROM discoveries WHERE fingerprint = ?`
		if s.engine == Postgres {
			q += ` FOR UPDATE`
		}
		cur, err := scanDiscovery(s.queryRow(ctx, tx, q, d.Fingerprint))
		if err == sql.ErrNoRows {
			locs, _ := json.Marshal(d.Locations)
			_, err := s.exec(ctx, tx, `INSERT INTO discoveries (`+discoveryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				d.ID, d.Fingerprint, d.Rule, d.Kind, d.Preview, boolInt(d.Verified), d.Status, d.IdentityID, d.Owner, d.Note, d.CredentialID,
				micros(d.FirstSeen), micros(d.LastSeen), string(locs), d.UpdatedBy)
			created = err == nil
			return err
		}
		if err != nil {
			return s.dbErr(err)
		}
		locs := append(cur.Locations, d.Locations...)
		// Keep one entry per place, newest last, at most MaxLocations.
		seen := map[string]int{}
		var merged []discovery.Location
		for _, l := range locs {
			k := l.Source + "\x00" + l.File + "\x00" + l.Commit
			if i, ok := seen[k]; ok {
				merged[i] = l
				continue
			}
			seen[k] = len(merged)
			merged = append(merged, l)
		}
		if len(merged) > discovery.MaxLocations {
			merged = merged[len(merged)-discovery.MaxLocations:]
		}
		b, _ := json.Marshal(merged)
		_, err = s.exec(ctx, tx, `UPDATE discoveries SET last_seen = ?, locations = ?, verified = ? WHERE id = ?`,
			micros(d.LastSeen), string(b), boolInt(cur.Verified || d.Verified), cur.ID)
		return err
	})
	if warden.IsCode(err, warden.CodeConflict) {
		// Two reporters inserted the same new fingerprint at once: merge.
		return s.UpsertDiscovery(ctx, d)
	}
	return created, err
}

// GetDiscovery implements discovery.InventoryStore.
func (s *Store) GetDiscovery(ctx context.Context, id string) (*discovery.Discovery, error) {
	d, err := scanDiscovery(s.queryRow(ctx, s.db, `SELECT `+discoveryCols+` FROM discoveries WHERE id = ?`, id))
	return d, s.dbErr(err)
}

// ListDiscoveries implements discovery.InventoryStore.
func (s *Store) ListDiscoveries(ctx context.Context, f discovery.InventoryFilter) ([]*discovery.Discovery, error) {
	q, args := `SELECT `+discoveryCols+` FROM discoveries WHERE 1 = 1`, []any{}
	for col, v := range map[string]string{"status": f.Status, "kind": f.Kind, "rule": f.Rule, "identity_id": f.IdentityID} {
		if v != "" {
			q += ` AND ` + col + ` = ?`
			args = append(args, v)
		}
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY last_seen DESC, id LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*discovery.Discovery
	for rows.Next() {
		d, err := scanDiscovery(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, d)
	}
	return out, s.dbErr(rows.Err())
}

// UpdateDiscovery implements discovery.InventoryStore.
func (s *Store) UpdateDiscovery(ctx context.Context, d *discovery.Discovery, rec warden.Change) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE discoveries SET status = ?, identity_id = ?, owner = ?, note = ?, credential_id = ?, updated_by = ? WHERE id = ?`,
			d.Status, d.IdentityID, d.Owner, d.Note, d.CredentialID, d.UpdatedBy, d.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return warden.Errorf(warden.CodeNotFound, "discovery %q not found", d.ID)
		}
		return s.recordChange(ctx, tx, rec)
	})
}
