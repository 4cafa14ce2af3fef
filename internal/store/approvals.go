package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"warden"
	"warden/internal/approval"
)

var _ approval.Store = (*Store)(nil)

const approvalCols = `id, identity_id, identity_name, owner, action, method, path, resource, fingerprint, policy, rule, reason, status, uses_left, created_at, expires_at, decided_at, decided_by, comment, used_at, required, approvers, allow_owner, approved_by, approved_count`

func scanApproval(sc interface{ Scan(...any) error }) (*approval.Approval, error) {
	var (
		a                approval.Approval
		resource         string
		created, expires int64
		decided, usedAt  sql.NullInt64
		approvers, by    string
		allowOwner, n    int64
	)
	if err := sc.Scan(&a.ID, &a.IdentityID, &a.IdentityName, &a.Owner, &a.Action, &a.Method, &a.Path, &resource, &a.Fingerprint,
		&a.Policy, &a.Rule, &a.Reason, &a.Status, &a.UsesLeft, &created, &expires, &decided, &a.DecidedBy, &a.Comment, &usedAt,
		&a.Required, &approvers, &allowOwner, &by, &n); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(approvers), &a.Approvers)
	_ = json.Unmarshal([]byte(by), &a.ApprovedBy)
	a.AllowOwner = allowOwner != 0
	_ = json.Unmarshal([]byte(resource), &a.Resource)
	a.CreatedAt, a.ExpiresAt = fromMicros(created), fromMicros(expires)
	a.DecidedAt, a.UsedAt = fromNullMicros(decided), fromNullMicros(usedAt)
	return &a, nil
}

// CreateApproval implements approval.Store.
func (s *Store) CreateApproval(ctx context.Context, a *approval.Approval) error {
	res, err := json.Marshal(a.Resource)
	if err != nil {
		return warden.FieldError("resource", "cannot be encoded")
	}
	approvers, _ := json.Marshal(nonNil(a.Approvers))
	by, _ := json.Marshal(nonNil(a.ApprovedBy))
	_, err = s.exec(ctx, s.db, `INSERT INTO approvals (`+approvalCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.IdentityID, a.IdentityName, a.Owner, a.Action, a.Method, a.Path, string(res), a.Fingerprint, a.Policy, a.Rule, a.Reason,
		a.Status, a.UsesLeft, micros(a.CreatedAt), micros(a.ExpiresAt), nullMicros(a.DecidedAt), a.DecidedBy, a.Comment, nullMicros(a.UsedAt),
		max(a.Required, 1), string(approvers), boolInt(a.AllowOwner), string(by), len(a.ApprovedBy))
	return err
}

// GetApproval implements approval.Store.
func (s *Store) GetApproval(ctx context.Context, id string) (*approval.Approval, error) {
	a, err := scanApproval(s.queryRow(ctx, s.db, `SELECT `+approvalCols+` FROM approvals WHERE id = ?`, id))
	return a, s.dbErr(err)
}

// ListApprovals implements approval.Store, newest first.
func (s *Store) ListApprovals(ctx context.Context, status, identityID string, limit int) ([]*approval.Approval, error) {
	q, args := `SELECT `+approvalCols+` FROM approvals WHERE 1 = 1`, []any{}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	if identityID != "" {
		q += ` AND identity_id = ?`
		args = append(args, identityID)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*approval.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, s.dbErr(err)
		}
		out = append(out, a)
	}
	return out, s.dbErr(rows.Err())
}

// CountPending implements approval.Store: unexpired pending requests.
func (s *Store) CountPending(ctx context.Context, identityID string, now time.Time) (int, error) {
	var n int
	err := s.queryRow(ctx, s.db, `SELECT COUNT(*) FROM approvals WHERE identity_id = ? AND status = 'pending' AND expires_at > ?`, identityID, micros(now)).Scan(&n)
	return n, s.dbErr(err)
}

// Transition implements approval.Store: compare-and-set on status and
// uses_left, so racing deciders or retries resolve to exactly one winner.
func (s *Store) Transition(ctx context.Context, a *approval.Approval, from string, fromUses, fromApprovals int, rec *warden.Change) error {
	by, _ := json.Marshal(nonNil(a.ApprovedBy))
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE approvals SET status = ?, uses_left = ?, decided_at = ?, decided_by = ?, comment = ?, used_at = ?, approved_by = ?, approved_count = ? WHERE id = ? AND status = ? AND uses_left = ? AND approved_count = ?`,
			a.Status, a.UsesLeft, nullMicros(a.DecidedAt), a.DecidedBy, a.Comment, nullMicros(a.UsedAt), string(by), len(a.ApprovedBy), a.ID, from, fromUses, fromApprovals)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return warden.Errorf(warden.CodeConflict, "approval %s changed concurrently", a.ID)
		}
		if rec != nil {
			return s.recordChange(ctx, tx, *rec)
		}
		return nil
	})
}

// ExpirePending implements approval.Store.
func (s *Store) ExpirePending(ctx context.Context, identityID string, now time.Time) (int, error) {
	res, err := s.exec(ctx, s.db, `UPDATE approvals SET status = 'expired', expires_at = ? WHERE identity_id = ? AND status IN ('pending', 'approved')`, micros(now), identityID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
