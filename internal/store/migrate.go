package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"warden"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered SQL file. Files are named NNNN_name.sql; the
// number is the version, applied in order, each exactly once.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %q: name must start with a number", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// dialect fills the few places where the engines' DDL differs.
func (s *Store) dialect(ddl string) string {
	r := strings.NewReplacer(
		"{{serial}}", map[Engine]string{SQLite: "INTEGER PRIMARY KEY AUTOINCREMENT", Postgres: "BIGSERIAL PRIMARY KEY"}[s.engine],
		"{{blob}}", map[Engine]string{SQLite: "BLOB", Postgres: "BYTEA"}[s.engine],
	)
	return r.Replace(ddl)
}

// migrationLockID is the PostgreSQL advisory lock that serialises replicas
// migrating the same database at once.
const migrationLockID = 0x77617264656e // "warden"

// migrate applies every pending migration, each in its own transaction that
// also records it. Two replicas starting together are serialised: on
// PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write
// lock BEGIN IMMEDIATE takes. Re-running is a no-op.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return warden.Wrap(err, warden.CodeInternal, "bad embedded migrations")
	}
	// Under the same lock as the migrations: two PostgreSQL replicas racing
	// on CREATE TABLE IF NOT EXISTS can otherwise both try to create the
	// table's row type, and the loser fails (SQLSTATE 42710 or 23505).
	if err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.engine == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
				return s.dbErr(err)
			}
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
		return s.dbErr(err)
	}); err != nil {
		return warden.Wrap(err, warden.CodeUnavailable, "cannot prepare migrations")
	}
	for _, m := range ms {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if s.engine == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
					return s.dbErr(err)
				}
			}
			var n int
			if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return s.dbErr(err)
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, s.dialect(m.sql)); err != nil {
				return warden.Wrap(err, warden.CodeInternal, "migration "+m.name+" failed")
			}
			_, err := s.exec(ctx, tx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, m.version, m.name, micros(now()))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.queryRow(ctx, s.db, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, s.dbErr(err)
	}
	return int(v.Int64), nil
}
