package store

import (
	"context"
	"database/sql"

	"warden"
	"warden/internal/audit"
)

// retentionLockID serialises retention transactions on PostgreSQL (replicas
// running periodic retention at once). It is not the head row's lock: the
// audit writer keeps appending while old events are deleted.
const retentionLockID = 0x77617264656e7274 // "wardenrt"

// AuditAnchors implements audit.Store.
func (s *Store) AuditAnchors(ctx context.Context) ([]audit.Anchor, error) {
	rows, err := s.query(ctx, s.db, `SELECT seq, first_seq, hash, checkpoint_seq, file, file_sha256, time, actor, key_id, sig FROM audit_anchors ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Anchor
	for rows.Next() {
		var (
			a         audit.Anchor
			hash, sum []byte
			t         int64
		)
		if err := rows.Scan(&a.Seq, &a.FirstSeq, &hash, &a.CheckpointSeq, &a.File, &sum, &t, &a.Actor, &a.KeyID, &a.Sig); err != nil {
			return nil, s.dbErr(err)
		}
		// A stored hash of the wrong length cannot match; keep it visibly
		// wrong rather than silently padded.
		if copy(a.Hash[:], hash) != 32 || len(hash) != 32 {
			a.Hash[0] ^= 0xff
		}
		if copy(a.FileSHA256[:], sum) != 32 || len(sum) != 32 {
			a.FileSHA256[0] ^= 0xff
		}
		a.Time = fromMicros(t)
		out = append(out, a)
	}
	return out, s.dbErr(rows.Err())
}

// ArchiveAudit implements audit.Store. The delete passes the append-only
// trigger only because this transaction inserts a gate row naming the new
// anchor and removes it before committing; no other transaction ever sees
// the gate row (PostgreSQL: uncommitted; SQLite: one writer at a time).
func (s *Store) ArchiveAudit(ctx context.Context, a audit.Anchor) (int64, error) {
	var deleted int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.engine == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, retentionLockID); err != nil {
				return s.dbErr(err)
			}
		}
		var last sql.NullInt64
		if err := s.queryRow(ctx, tx, `SELECT MAX(seq) FROM audit_anchors`).Scan(&last); err != nil {
			return s.dbErr(err)
		}
		if a.FirstSeq != last.Int64+1 || a.Seq < a.FirstSeq {
			return warden.Errorf(warden.CodeConflict, "the retention cut %d-%d does not follow the last cut (seq %d): another retention run came first", a.FirstSeq, a.Seq, last.Int64)
		}
		var h []byte
		err := s.queryRow(ctx, tx, `SELECT hash FROM audit_events WHERE seq = ?`, a.Seq).Scan(&h)
		if err == sql.ErrNoRows || (err == nil && string(h) != string(a.Hash[:])) {
			return warden.Errorf(warden.CodeConflict, "the audit event at seq %d is not the one archived", a.Seq)
		}
		if err != nil {
			return s.dbErr(err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO audit_anchors (seq, first_seq, hash, checkpoint_seq, file, file_sha256, time, actor, key_id, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Seq, a.FirstSeq, a.Hash[:], a.CheckpointSeq, a.File, a.FileSHA256[:], micros(a.Time), a.Actor, a.KeyID, a.Sig); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO audit_retention_gate (seq) VALUES (?)`, a.Seq); err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM audit_events WHERE seq <= ?`, a.Seq)
		if err != nil {
			return err
		}
		if deleted, err = res.RowsAffected(); err != nil {
			return s.dbErr(err)
		}
		if want := a.Seq - a.FirstSeq + 1; deleted != want {
			return warden.Errorf(warden.CodeConflict, "the retention cut %d-%d would delete %d events, not %d: the chain below the cut is not what was archived", a.FirstSeq, a.Seq, deleted, want)
		}
		_, err = s.exec(ctx, tx, `DELETE FROM audit_retention_gate WHERE seq = ?`, a.Seq)
		return err
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}
