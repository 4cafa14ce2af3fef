package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"

	"warden"
	"warden/internal/monitor"
)

var _ monitor.Store = (*Store)(nil)

const findingCols = `id, identity_id, identity_name, owner, key_id, detector, severity, explanation, action, evidence, action_taken, status, first_event_at, detected_at, contained_at, acked_by, acked_at, resolved_by, resolved_at, note`

func scanFinding(sc interface{ Scan(...any) error }) (*monitor.Finding, error) {
	var (
		f                monitor.Finding
		sev, evidence    string
		first, detected  int64
		contained, ackAt sql.NullInt64
		resolvedAt       sql.NullInt64
	)
	if err := sc.Scan(&f.ID, &f.IdentityID, &f.IdentityName, &f.Owner, &f.KeyID, &f.Detector, &sev, &f.Explanation, &f.Action, &evidence,
		&f.ActionTaken, &f.Status, &first, &detected, &contained, &f.AckedBy, &ackAt, &f.ResolvedBy, &resolvedAt, &f.Note); err != nil {
		return nil, err
	}
	f.Severity = monitor.Severity(sev)
	if evidence != "" && evidence != "{}" {
		_ = json.Unmarshal([]byte(evidence), &f.Evidence)
	}
	f.FirstEventAt, f.DetectedAt = fromMicros(first), fromMicros(detected)
	f.ContainedAt, f.AckedAt, f.ResolvedAt = fromNullMicros(contained), fromNullMicros(ackAt), fromNullMicros(resolvedAt)
	return &f, nil
}

// CreateFinding implements monitor.Store.
func (s *Store) CreateFinding(ctx context.Context, f *monitor.Finding) error {
	ev := []byte("{}")
	if len(f.Evidence) > 0 {
		b, err := json.Marshal(f.Evidence)
		if err != nil {
			return warden.FieldError("evidence", "cannot be encoded")
		}
		ev = b
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO monitor_findings (`+findingCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		f.ID, f.IdentityID, f.IdentityName, f.Owner, f.KeyID, f.Detector, string(f.Severity), f.Explanation, f.Action, string(ev),
		f.ActionTaken, f.Status, micros(f.FirstEventAt), micros(f.DetectedAt), nullMicros(f.ContainedAt), f.AckedBy, nullMicros(f.AckedAt),
		f.ResolvedBy, nullMicros(f.ResolvedAt), f.Note)
	return err
}

// GetFinding implements monitor.Store.
func (s *Store) GetFinding(ctx context.Context, id string) (*monitor.Finding, error) {
	f, err := scanFinding(s.queryRow(ctx, s.db, `SELECT `+findingCols+` FROM monitor_findings WHERE id = ?`, id))
	return f, s.dbErr(err)
}

// ListFindings implements monitor.Store: newest first, keyset-paginated on
// (detected_at, id). The cursor is the last row's key, base64-encoded.
func (s *Store) ListFindings(ctx context.Context, f monitor.Filter) ([]*monitor.Finding, string, error) {
	q, args := `SELECT `+findingCols+` FROM monitor_findings WHERE 1 = 1`, []any{}
	if f.IdentityID != "" {
		q += ` AND identity_id = ?`
		args = append(args, f.IdentityID)
	}
	if f.Owner != "" {
		q += ` AND owner = ?`
		args = append(args, f.Owner)
	}
	if len(f.Severity) > 0 {
		q += ` AND severity IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(f.Severity)), ", ") + `)`
		for _, v := range f.Severity {
			args = append(args, string(v))
		}
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	if f.Detector != "" {
		q += ` AND detector = ?`
		args = append(args, f.Detector)
	}
	if f.Cursor != "" {
		at, id, err := decodeFindingCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (detected_at < ? OR (detected_at = ? AND id < ?))`
		args = append(args, at, at, id)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY detected_at DESC, id DESC LIMIT ?`, append(args, f.Limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []*monitor.Finding
	for rows.Next() {
		x, err := scanFinding(rows)
		if err != nil {
			return nil, "", s.dbErr(err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.dbErr(err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(micros(last.DetectedAt), 10) + ":" + last.ID))
	}
	return out, next, nil
}

func decodeFindingCursor(c string) (int64, string, error) {
	bad := warden.FieldError("cursor", "is not a cursor this server issued")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", bad
	}
	ts, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || !warden.HasPrefix(id, warden.PrefixFinding) {
		return 0, "", bad
	}
	return n, id, nil
}

// UpdateFinding implements monitor.Store: compare-and-set on the status.
func (s *Store) UpdateFinding(ctx context.Context, f *monitor.Finding, from string) error {
	res, err := s.exec(ctx, s.db, `UPDATE monitor_findings SET status = ?, acked_by = ?, acked_at = ?, resolved_by = ?, resolved_at = ?, note = ? WHERE id = ? AND status = ?`,
		f.Status, f.AckedBy, nullMicros(f.AckedAt), f.ResolvedBy, nullMicros(f.ResolvedAt), f.Note, f.ID, from)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var one int
	if err := s.queryRow(ctx, s.db, `SELECT 1 FROM monitor_findings WHERE id = ?`, f.ID).Scan(&one); err != nil {
		return s.dbErr(err)
	}
	return warden.Errorf(warden.CodeConflict, "finding %s changed concurrently", f.ID)
}

// SaveBaselines implements monitor.Store: one transaction, upserts.
func (s *Store) SaveBaselines(ctx context.Context, snaps []monitor.Snapshot) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, sn := range snaps {
			if _, err := s.exec(ctx, tx, `INSERT INTO monitor_baselines (identity_id, data, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (identity_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
				sn.IdentityID, string(sn.Data), micros(sn.UpdatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadBaselines implements monitor.Store.
func (s *Store) LoadBaselines(ctx context.Context) ([]monitor.Snapshot, error) {
	rows, err := s.query(ctx, s.db, `SELECT identity_id, data, updated_at FROM monitor_baselines ORDER BY identity_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []monitor.Snapshot
	for rows.Next() {
		var (
			sn   monitor.Snapshot
			data string
			at   int64
		)
		if err := rows.Scan(&sn.IdentityID, &data, &at); err != nil {
			return nil, s.dbErr(err)
		}
		sn.Data, sn.UpdatedAt = []byte(data), fromMicros(at)
		out = append(out, sn)
	}
	return out, s.dbErr(rows.Err())
}
