package pgwire_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"warden"
	"warden/apitype"
	"warden/internal/config"
	"warden/internal/wardentest"
)

// env is a running Warden with a wire listener, a postgres connector
// "crm-db" on the real test database (a schema of its own with tables
// customers and orders), a postgres_dynamic credential and one agent.
type env struct {
	t        *testing.T
	srv      *wardentest.Server
	pgAddr   string
	admin    *pgx.Conn // superuser connection to the test database
	schema   string
	agentKey string
	agentID  string
}

const agentName = "crm-agent"

// policyDoc lets the agent read the schema, insert orders, update with a
// WHERE, sends deletes to a human and denies deletes without WHERE.
const policyDoc = `apiVersion: warden/v1
kind: Policy
name: crm-agent-db
subjects: [{identity: crm-agent}]
rules:
  - id: read
    effect: allow
    actions: ["crm-db:select"]
  - id: write-orders
    effect: allow
    actions: ["crm-db:insert"]
    when: 'resource.writes.all(t, t.endsWith(".orders"))'
  - id: update-with-where
    effect: allow
    actions: ["crm-db:update"]
    when: 'resource.has_where == true'
  - id: no-runaway-delete
    effect: deny
    actions: ["crm-db:delete"]
    when: 'resource.has_where != true'
  - id: delete-needs-human
    effect: require_approval
    actions: ["crm-db:delete"]
`

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newEnv(t *testing.T, configure func(*config.Config)) *env {
	t.Helper()
	base := os.Getenv(wardentest.PostgresDSNEnv)
	if base == "" {
		t.Skip(wardentest.PostgresDSNEnv + " not set; skipping PostgreSQL test")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("postgres unreachable (%s): %v", wardentest.PostgresDSNEnv, err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	schema := "pgw_" + strings.ToLower(warden.RandomString(12))
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".customers (id int PRIMARY KEY, name text NOT NULL, email text)",
		"CREATE TABLE " + schema + ".orders (id serial PRIMARY KEY, customer_id int, amount numeric(10,2))",
		"INSERT INTO " + schema + ".customers SELECT i, 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 50) i",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	addr := freeAddr(t)
	srv := wardentest.StartServer(t, wardentest.ServerOptions{Configure: func(c *config.Config) {
		c.PostgresListen = addr
		if configure != nil {
			configure(c)
		}
	}})
	e := &env{t: t, srv: srv, pgAddr: addr, admin: admin, schema: schema}
	root := srv.Root
	id, err := root.CreateIdentity(ctx, apitype.CreateIdentity{Name: agentName, Type: "ai_agent", Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e.agentID = id.ID
	k, err := root.CreateKey(ctx, id.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.agentKey = k.Key
	u, _ := url.Parse(base)
	conn := fmt.Sprintf(`apiVersion: warden/v1
kind: Connector
name: crm-db
type: postgres
postgres: {host: 127.0.0.1, port: %s, database: %s, sslmode: disable, max_rows: 20, statement_timeout: 5s}
`, u.Port(), strings.TrimPrefix(u.Path, "/"))
	if _, err := root.PutConnector(ctx, "crm-db", []byte(conn), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	cred := apitype.CreateCredential{
		Name: "crm-db-lease", Type: "postgres_dynamic", Connector: "crm-db", Secret: map[string]string{"admin_dsn": base},
		Config: map[string]any{"ttl": "10m", "grants": []any{
			"GRANT USAGE ON SCHEMA " + schema + " TO {{role}}",
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO {{role}}",
			"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + schema + " TO {{role}}",
		}},
	}
	if err := root.Do(ctx, http.MethodPost, "/v1/credentials", cred, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := root.PutPolicy(ctx, "crm-agent-db", []byte(policyDoc), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Drop what the leases created (the credential's delete drops the roles).
		_ = root.Do(context.Background(), http.MethodDelete, "/v1/credentials/crm-db-lease", nil, nil)
	})
	return e
}

func (e *env) connString(user, password string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/crm-db?sslmode=disable&connect_timeout=10", url.PathEscape(user), url.PathEscape(password), e.pgAddr)
}

func (e *env) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.connString(agentName, e.agentKey))
	if err != nil {
		t.Fatalf("connect through the listener: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (e *env) q(name string) string { return e.schema + "." + name }

// pgErr returns err's SQLSTATE and message ("" when it is not a
// PostgreSQL error).
func pgErr(err error) (string, string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message
	}
	return "", ""
}

func (e *env) tableExists(t *testing.T, name string) bool {
	var ok bool
	if err := e.admin.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", e.q(name)).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func (e *env) count(t *testing.T, table string) int {
	var n int
	if err := e.admin.QueryRow(context.Background(), "SELECT count(*) FROM "+e.q(table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWireAllowedAndRefused(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.connect(t)

	// Extended protocol (pgx prepares and caches), with an argument.
	var name string
	if err := c.QueryRow(ctx, "SELECT name FROM "+e.q("customers")+" WHERE id = $1", 7).Scan(&name); err != nil {
		t.Fatalf("allowed select: %v", err)
	}
	if name != "customer 7" {
		t.Fatalf("name %q", name)
	}
	// Again: the cached statement is bound and executed again, decided again.
	if err := c.QueryRow(ctx, "SELECT name FROM "+e.q("customers")+" WHERE id = $1", 8).Scan(&name); err != nil || name != "customer 8" {
		t.Fatalf("second execute: %q %v", name, err)
	}
	// Simple protocol.
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+e.q("customers"), pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 50 {
		t.Fatalf("simple count: %d %v", n, err)
	}
	// The session is the leased role, not the superuser.
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || !strings.HasPrefix(who, "warden_") {
		t.Fatalf("current_user %q %v", who, err)
	}
	// Insert allowed into orders only.
	if _, err := c.Exec(ctx, "INSERT INTO "+e.q("orders")+" (customer_id, amount) VALUES ($1, $2)", 1, "9.50"); err != nil {
		t.Fatalf("allowed insert: %v", err)
	}
	_, err := c.Exec(ctx, "INSERT INTO "+e.q("customers")+" (id, name) VALUES (999, 'x')")
	if code, msg := pgErr(err); code != "42501" || !strings.Contains(msg, "warden") {
		t.Fatalf("insert into customers: %v", err)
	}
	// Delete without WHERE: denied by the rule, the table keeps its rows.
	_, err = c.Exec(ctx, "DELETE FROM "+e.q("customers"))
	if code, msg := pgErr(err); code != "42501" || !strings.Contains(msg, "denied") {
		t.Fatalf("runaway delete: %v", err)
	}
	if e.count(t, "customers") != 50 {
		t.Fatal("the runaway delete reached the database")
	}
	// A delete with WHERE needs a human: refused with the approval id.
	_, err = c.Exec(ctx, "DELETE FROM "+e.q("customers")+" WHERE id = 3")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "approval_required") || !strings.Contains(pe.Hint, "apr_") {
		t.Fatalf("delete needing approval: %#v", err)
	}
	// A human approves; the agent presents the approval over the wire and
	// the identical statement runs once.
	apr := strings.Fields(pe.Hint)[1]
	if err := e.srv.Root.Do(ctx, http.MethodPost, "/v1/approvals/"+apr+"/approve", map[string]any{"comment": "ok"}, nil); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if _, err := c.Exec(ctx, "SET warden.approval = '"+apr+"'"); err != nil {
		t.Fatalf("SET warden.approval: %v", err)
	}
	tag, err := c.Exec(ctx, "DELETE FROM "+e.q("customers")+" WHERE id = 3")
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("approved delete: %v %v", tag, err)
	}
	// The approval was for one execution.
	if _, err := c.Exec(ctx, "SET warden.approval = '"+apr+"'"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "DELETE FROM "+e.q("customers")+" WHERE id = 3")
	if code, _ := pgErr(err); code != "42501" {
		t.Fatalf("approval used twice: %v", err)
	}
	if e.count(t, "customers") != 49 {
		t.Fatalf("customers: %d rows, want 49", e.count(t, "customers"))
	}
	// The session still works after refusals.
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after refusals: %v", err)
	}
	// Unparseable SQL never reaches the database.
	_, err = c.Exec(ctx, "SELEC * FROM customers")
	if code, msg := pgErr(err); code != "42601" || !strings.Contains(msg, "warden") {
		t.Fatalf("garbage SQL: %v", err)
	}
	// A refusal inside a transaction fails it, as PostgreSQL's own errors
	// do: the insert before it is rolled back at COMMIT.
	orders := e.count(t, "orders")
	tx0, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx0.Exec(ctx, "INSERT INTO "+e.q("orders")+" (customer_id, amount) VALUES (2, 1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx0.Exec(ctx, "DELETE FROM "+e.q("customers")); err == nil {
		t.Fatal("runaway delete in a transaction allowed")
	}
	if err := tx0.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("commit after a refusal: %v", err)
	}
	if e.count(t, "orders") != orders {
		t.Fatal("the insert of a failed transaction was committed")
	}
	// The same for a pipelined batch (one implicit transaction up to Sync).
	b := &pgx.Batch{}
	b.Queue("INSERT INTO "+e.q("orders")+" (customer_id, amount) VALUES ($1, $2)", 3, "1.00")
	b.Queue("DELETE FROM " + e.q("customers"))
	b.Queue("INSERT INTO "+e.q("orders")+" (customer_id, amount) VALUES ($1, $2)", 4, "1.00")
	if err := c.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("batch with a runaway delete succeeded")
	} else if code, _ := pgErr(err); code != "42501" {
		t.Fatalf("batch: %v", err)
	}
	if e.count(t, "orders") != orders {
		t.Fatal("part of a refused batch was committed")
	}
	// Transactions work.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE "+e.q("customers")+" SET email = 'x@example.com' WHERE id = 1"); err != nil {
		t.Fatalf("update in tx: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var email string
	if err := e.admin.QueryRow(ctx, "SELECT email FROM "+e.q("customers")+" WHERE id = 1").Scan(&email); err != nil || email != "c1@example.com" {
		t.Fatalf("rolled back update is visible: %q %v", email, err)
	}
}

// TestWireAttacks runs the attack list of the issue against the real
// database through the listener: each is refused (42501 or 42601), and
// the database shows no effect.
func TestWireAttacks(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.connect(t)
	cust := e.q("customers")
	attacks := []struct{ name, sql, code string }{
		{"stacked statements", "SELECT 1; DROP TABLE " + cust, "42501"},
		{"stacked after a comment", "SELECT 1 -- harmless\n; DROP TABLE " + cust, "42501"},
		{"block comment", "SELECT 1 /* */; DELETE FROM " + cust, "42501"},
		{"dollar quoting then a statement", "SELECT $x$ ; $x$; DROP TABLE " + cust, "42501"},
		{"copy to program", "COPY " + cust + " TO PROGRAM 'cat > /tmp/warden-pwned'", "42501"},
		{"copy from program", "COPY " + cust + " FROM PROGRAM 'echo 1'", "42501"},
		{"copy to server file", "COPY " + cust + " TO '/tmp/warden-pwned'", "42501"},
		{"set role", "SET ROLE postgres", "42501"},
		{"reset role", "RESET ROLE", "42501"},
		{"set session authorization", "SET SESSION AUTHORIZATION postgres", "42501"},
		{"set search_path", "SET search_path TO evil", "42501"},
		{"set statement_timeout", "SET statement_timeout = 0", "42501"},
		{"set_config role", "SELECT set_config('role', 'postgres', false)", "42501"},
		{"pg_terminate_backend in select", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "42501"},
		{"dblink in from", "SELECT * FROM dblink('dbname=test', 'DROP TABLE " + cust + "') AS t(x text)", "42501"},
		{"lo_export", "SELECT lo_export(1, '/tmp/warden-pwned')", "42501"},
		{"pg_read_file", "SELECT pg_read_file('/etc/passwd')", "42501"},
		{"query_to_xml runs a string", "SELECT query_to_xml('DELETE FROM " + cust + " RETURNING 1', true, true, '')", "42501"},
		{"writable cte delete", "WITH d AS (DELETE FROM " + cust + " RETURNING *) SELECT count(*) FROM d", "42501"},
		{"writable cte runaway update", "WITH u AS (UPDATE " + cust + " SET name = 'x' RETURNING 1) SELECT count(*) FROM u", "42501"},
		{"truncate", "TRUNCATE " + cust, "42501"},
		{"drop", "DROP TABLE " + cust, "42501"},
		{"alter system", "ALTER SYSTEM SET log_statement = 'none'", "42501"},
		{"create role", "CREATE ROLE evil SUPERUSER", "42501"},
		{"do block", "DO $$BEGIN EXECUTE 'DROP TABLE " + cust + "'; END$$", "42501"},
		{"sql execute of a prepared statement", "EXECUTE anything", "42501"},
		{"unterminated dollar quote", "SELECT $$; DROP TABLE " + cust, "42601"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			_, err := c.Exec(ctx, a.sql, pgx.QueryExecModeSimpleProtocol)
			if code, msg := pgErr(err); code != a.code || !strings.Contains(msg, "warden") {
				t.Fatalf("%q: got %v, want SQLSTATE %s from Warden", a.sql, err, a.code)
			}
			// Through the extended protocol too (one statement per Parse).
			if !strings.Contains(a.sql, ";") {
				_, err := c.Exec(ctx, a.sql, pgx.QueryExecModeExec)
				if code, _ := pgErr(err); code != a.code {
					t.Fatalf("extended %q: got %v, want SQLSTATE %s", a.sql, err, a.code)
				}
			}
		})
	}
	if !e.tableExists(t, "customers") || e.count(t, "customers") != 50 {
		t.Fatal("an attack changed the customers table")
	}
	if _, err := os.Stat("/tmp/warden-pwned"); err == nil {
		t.Fatal("a COPY or lo_export reached the file system")
	}
	var super int
	if err := e.admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = 'evil'").Scan(&super); err != nil || super != 0 {
		t.Fatalf("role created: %d %v", super, err)
	}
	// Dollar quoting that hides nothing is a plain select and runs.
	var s string
	if err := c.QueryRow(ctx, "SELECT $$; DROP TABLE "+cust+"; $$", pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil || !strings.Contains(s, "DROP TABLE") {
		t.Fatalf("quoted text: %q %v", s, err)
	}
	if !e.tableExists(t, "customers") {
		t.Fatal("quoted DROP ran")
	}
	// The session survived every refusal.
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session after attacks: %v", err)
	}
}

// TestWirePreparedStatementSwap: a statement prepared through the
// listener can only run with the text that was decided.
func TestWirePreparedStatementSwap(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pc, err := pgconn.Connect(ctx, e.connString(agentName, e.agentKey))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	cust := e.q("customers")
	if _, err := pc.Prepare(ctx, "s1", "SELECT name FROM "+cust+" WHERE id = $1", nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	// The same name again is refused by Warden before the database sees it.
	_, err = pc.Prepare(ctx, "s1", "DELETE FROM "+cust, nil)
	if code, _ := pgErr(err); code != "42P05" && code != "42501" {
		t.Fatalf("re-prepare under the same name: %v", err)
	}
	// Replace it behind the protocol's back with SQL: DEALLOCATE is allowed,
	// after which Warden no longer knows s1 and refuses to bind it.
	if err := pc.Exec(ctx, "DEALLOCATE s1").Close(); err != nil {
		t.Fatalf("deallocate: %v", err)
	}
	err = pc.Exec(ctx, "PREPARE s1 AS DELETE FROM "+cust).Close()
	if code, _ := pgErr(err); code != "42501" {
		t.Fatalf("SQL PREPARE of a runaway delete: %v", err)
	}
	rr := pc.ExecPrepared(ctx, "s1", [][]byte{[]byte("1")}, nil, nil).Read()
	if code, _ := pgErr(rr.Err); code != "26000" {
		t.Fatalf("executing a statement Warden did not see prepared: %v", rr.Err)
	}
	if e.count(t, "customers") != 50 {
		t.Fatal("rows were deleted")
	}
	// A statement prepared through the listener runs and is decided with its arguments.
	if _, err := pc.Prepare(ctx, "s2", "SELECT name FROM "+cust+" WHERE id = $1", nil); err != nil {
		t.Fatal(err)
	}
	rr = pc.ExecPrepared(ctx, "s2", [][]byte{[]byte("5")}, nil, nil).Read()
	if rr.Err != nil || len(rr.Rows) != 1 || string(rr.Rows[0][0]) != "customer 5" {
		t.Fatalf("prepared select: %+v", rr)
	}
	// Preparing what could never be allowed is refused at Parse.
	_, err = pc.Prepare(ctx, "s3", "DROP TABLE "+cust, nil)
	if code, _ := pgErr(err); code != "42501" {
		t.Fatalf("prepare of a drop: %v", err)
	}
	// Fast-path function calls are refused.
	if !e.tableExists(t, "customers") {
		t.Fatal("table dropped")
	}
}

// TestWireAuthentication: the user must be the key's identity; the
// database must be a postgres connector; a suspended identity's leases
// are dropped and it can no longer connect.
func TestWireAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct{ name, user, pw, db, code string }{
		{"wrong key", agentName, "wk_not_a_key", "crm-db", "28P01"},
		{"another identity's name", "someone-else", "", "crm-db", "28P01"},
		{"unknown connector", agentName, "", "nope", "3D000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pw := tc.pw
			if pw == "" {
				pw = e.agentKey
			}
			cs := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", tc.user, url.PathEscape(pw), e.pgAddr, tc.db)
			c, err := pgx.Connect(ctx, cs)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connected")
			}
			if code, _ := pgErr(err); code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
	// An access token works as the password too.
	tok, err := e.srv.Root.Token(ctx, agentName, e.agentKey)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := pgx.Connect(ctx, e.connString(agentName, tok.AccessToken))
	if err != nil {
		t.Fatalf("token as password: %v", err)
	}
	var role1, role2 string
	if err := c1.QueryRow(ctx, "SELECT current_user").Scan(&role1); err != nil {
		t.Fatal(err)
	}
	c1.Close(ctx)
	// The lease is reused by the next connection.
	c2 := e.connect(t)
	if err := c2.QueryRow(ctx, "SELECT current_user").Scan(&role2); err != nil {
		t.Fatal(err)
	}
	if role1 != role2 || !strings.HasPrefix(role1, "warden_") {
		t.Fatalf("roles %q and %q: the lease should be reused", role1, role2)
	}
	// Suspension: the role is dropped (its sessions end) and new
	// connections are refused.
	if _, err := e.srv.Root.SetStatus(ctx, e.agentID, "suspend", "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var exists bool
		if err := e.admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role1).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("role %s still exists after suspension", role1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c2.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("the suspended identity's session still runs queries")
	}
	if c, err := pgx.Connect(ctx, e.connString(agentName, e.agentKey)); err == nil {
		c.Close(ctx)
		t.Fatal("a suspended identity connected")
	}
}

// TestWireProtocolAbuse: garbage, oversized messages and a client that
// never reads its results end the connection without harm.
func TestWireProtocolAbuse(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.PostgresWriteTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	t.Run("garbage startup", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.pgAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		if n == 0 || buf[0] != 'E' || !bytes.Contains(buf[:n], []byte("08P01")) {
			t.Fatalf("answer %q", buf[:n])
		}
	})
	t.Run("garbage after login", func(t *testing.T) {
		pc, err := pgconn.Connect(ctx, e.connString(agentName, e.agentKey))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		raw := pc.Conn()
		_, _ = raw.Write([]byte{'Z', 0, 0, 0, 4, 0xff, 0xfe})
		_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := raw.Read(buf)
		if n == 0 || buf[0] != 'E' || !bytes.Contains(buf[:n], []byte("08P01")) {
			t.Fatalf("answer %q", buf[:n])
		}
	})
	t.Run("huge query", func(t *testing.T) {
		c := e.connect(t)
		huge := "SELECT '" + strings.Repeat("a", 1<<20) + "'"
		_, err := c.Exec(ctx, huge, pgx.QueryExecModeSimpleProtocol)
		if code, _ := pgErr(err); code != "54000" {
			t.Fatalf("huge query: %v", err)
		}
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("session after a huge query: %v", err)
		}
		bigger := "SELECT '" + strings.Repeat("a", 4<<20) + "'"
		if _, err := c.Exec(ctx, bigger, pgx.QueryExecModeSimpleProtocol); err == nil {
			t.Fatal("a message over the limit was accepted")
		}
	})
	t.Run("client never reads", func(t *testing.T) {
		pc, err := pgconn.Connect(ctx, e.connString(agentName, e.agentKey))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		var pid string
		rr := pc.ExecParams(ctx, "SELECT pg_backend_pid()::text", nil, nil, nil, nil).Read()
		if rr.Err != nil {
			t.Fatal(rr.Err)
		}
		pid = string(rr.Rows[0][0])
		raw := pc.Conn()
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		// Ask for far more than the socket buffers hold, then never read.
		q := "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"
		msg := append([]byte{'Q', 0, 0, 0, 0}, append([]byte(q), 0)...)
		msg[1], msg[2], msg[3], msg[4] = byte((len(msg)-1)>>24), byte((len(msg)-1)>>16), byte((len(msg)-1)>>8), byte(len(msg)-1)
		if _, err := raw.Write(msg); err != nil {
			t.Fatal(err)
		}
		// Warden gives up on the client and ends the upstream session.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if err := e.admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", pid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the upstream session of a client that never reads is still there")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestExecuteAPI: POST /v1/execute on the postgres connector.
func TestExecuteAPI(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	call := func(sql string, args ...any) (int, map[string]any) {
		body, _ := json.Marshal(map[string]any{"connector": "crm-db", "operation": "query", "params": map[string]any{"sql": sql, "args": args}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/execute", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.agentKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := call("SELECT id, name FROM "+e.q("customers")+" WHERE id <= $1 ORDER BY id", 3)
	if status != 200 {
		t.Fatalf("select: %d %v", status, out)
	}
	rows := out["rows"].([]any)
	if len(rows) != 3 || fmt.Sprint(out["columns"]) != "[id name]" || fmt.Sprint(rows[0]) != "[1 customer 1]" {
		t.Fatalf("result %v", out)
	}
	// The connector's row cap (20).
	status, out = call("SELECT id FROM " + e.q("customers"))
	if status != 200 || len(out["rows"].([]any)) != 20 || out["truncated"] != true {
		t.Fatalf("row cap: %d %v", status, out)
	}
	// A refused statement refuses the whole request.
	before := e.count(t, "orders")
	status, out = call("INSERT INTO " + e.q("orders") + " (customer_id, amount) VALUES (1, 1); DELETE FROM " + e.q("customers"))
	if status != 403 || out["code"] != "denied" {
		t.Fatalf("stacked runaway delete: %d %v", status, out)
	}
	if e.count(t, "orders") != before || e.count(t, "customers") != 50 {
		t.Fatal("part of a refused request ran")
	}
	// A delete with WHERE waits for a human.
	status, out = call("DELETE FROM "+e.q("customers")+" WHERE id = $1", 4)
	if status != 202 || !strings.HasPrefix(fmt.Sprint(out["approval_id"]), "apr_") {
		t.Fatalf("delete: %d %v", status, out)
	}
	// Prefer: wait: the request waits for the human and then runs once.
	go func() {
		for range 100 {
			var l apitype.ApprovalList
			if err := e.srv.Root.Do(ctx, http.MethodGet, "/v1/approvals?status=pending", nil, &l); err == nil {
				for _, a := range l.Approvals {
					if a.Action == "crm-db:delete" && a.ID != out["approval_id"] {
						_ = e.srv.Root.Do(ctx, http.MethodPost, "/v1/approvals/"+a.ID+"/approve", apitype.ApprovalDecision{Comment: "ok"}, nil)
						return
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	{
		body, _ := json.Marshal(map[string]any{"connector": "crm-db", "operation": "query", "params": map[string]any{"sql": "DELETE FROM " + e.q("customers") + " WHERE id = $1", "args": []any{5}}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/execute", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.agentKey)
		req.Header.Set("Prefer", "wait=20")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if resp.StatusCode != 200 || fmt.Sprint(res["statements"].([]any)[0].(map[string]any)["row_count"]) != "1" {
			t.Fatalf("delete with Prefer: wait: %d %v", resp.StatusCode, res)
		}
		if e.count(t, "customers") != 49 {
			t.Fatal("the approved delete did not run exactly once")
		}
	}
	// Garbage SQL is refused as invalid.
	status, out = call("DROP TABLE x; SELEC")
	if status != 400 {
		t.Fatalf("garbage: %d %v", status, out)
	}
	// What the execute front cannot run faithfully is refused as invalid.
	for _, bad := range []struct {
		sql  string
		args []any
	}{
		{"SELECT $2::int", []any{1}},
		{"BEGIN", nil},
		{"COPY " + e.q("customers") + " TO STDOUT", nil},
		{"SELECT 1; SELECT $1::int", []any{1}},
	} {
		if status, out := call(bad.sql, bad.args...); status != 400 || out["code"] != "invalid" {
			t.Fatalf("%q: %d %v", bad.sql, status, out)
		}
	}
	// Several statements run in one transaction and return typed values.
	status, out = call("INSERT INTO " + e.q("orders") + " (customer_id, amount) VALUES (7, 12.50); SELECT amount, now() IS NOT NULL AS ok, gen_random_uuid() AS id FROM " + e.q("orders") + " WHERE customer_id = 7")
	if status != 200 {
		t.Fatalf("multi-statement: %d %v", status, out)
	}
	rows = out["rows"].([]any)
	if len(rows) != 1 || fmt.Sprint(rows[0].([]any)[0]) != "12.5" || rows[0].([]any)[1] != true || len(fmt.Sprint(rows[0].([]any)[2])) != 36 {
		t.Fatalf("typed values: %v", out)
	}
	if st := out["statements"].([]any); len(st) != 2 || st[0].(map[string]any)["row_count"] != float64(1) {
		t.Fatalf("statements: %v", out["statements"])
	}
	// Statement timeout from the connector (5s).
	status, out = call("SELECT pg_sleep(10)")
	if status == 200 {
		t.Fatalf("pg_sleep(10) finished under a 5s statement timeout: %v", out)
	}
	// Audit: decided events carry the fingerprint, class and tables;
	// completed ones the rows.
	var list struct {
		Events []struct {
			Kind     string          `json:"kind"`
			Resource string          `json:"resource"`
			Detail   json.RawMessage `json:"detail"`
		} `json:"events"`
	}
	if err := e.srv.Root.Do(ctx, http.MethodGet, "/v1/audit?action=crm-db:select&limit=100", nil, &list); err != nil {
		t.Fatal(err)
	}
	var decided, completed bool
	for _, ev := range list.Events {
		if ev.Kind == "operation.decided" && strings.Contains(ev.Resource, "fingerprint=") && strings.Contains(ev.Resource, e.q("customers")) {
			decided = true
		}
		if ev.Kind == "operation.completed" && strings.Contains(string(ev.Detail), `"rows":3`) {
			completed = true
		}
	}
	if !decided || !completed {
		t.Fatalf("audit events lack the statement facts (decided %v, completed %v): %+v", decided, completed, list.Events)
	}
}

// TestWireCopyCancelAndPsql: COPY FROM STDIN relays data for a decided
// insert; a client's cancel request reaches the database; psql works
// through the listener with clear errors.
func TestWireCopyCancelAndPsql(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.connect(t)
	n, err := c.CopyFrom(ctx, pgx.Identifier{e.schema, "orders"}, []string{"customer_id", "amount"}, pgx.CopyFromRows([][]any{{1, "1.00"}, {2, "2.00"}, {3, "3.00"}}))
	if err != nil || n != 3 {
		t.Fatalf("copy from stdin: %d %v", n, err)
	}
	if got := e.count(t, "orders"); got != 3 {
		t.Fatalf("orders has %d rows after COPY, want 3", got)
	}
	// COPY into a table the policy does not allow writing.
	_, err = c.CopyFrom(ctx, pgx.Identifier{e.schema, "customers"}, []string{"id", "name"}, pgx.CopyFromRows([][]any{{100, "x"}}))
	if code, _ := pgErr(err); code != "42501" {
		t.Fatalf("copy into customers: %v", err)
	}

	// Cancel: the listener forwards the client's cancel request (sent on
	// a new connection with the key data the listener gave the client).
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = c.PgConn().CancelRequest(ctx)
	}()
	start := time.Now()
	_, err = c.Exec(ctx, "SELECT pg_sleep(4)")
	if code, msg := pgErr(err); code != "57014" || !strings.Contains(msg, "user request") || time.Since(start) > 3*time.Second {
		t.Fatalf("cancel: %v after %s: the cancel request did not reach the database", err, time.Since(start))
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("session after a cancel: %v", err)
	}

	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Log("psql not installed; skipping the psql part")
		return
	}
	run := func(sql string) (string, string, error) {
		cmd := exec.Command(psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", portOf(e.pgAddr), "-U", agentName, "-d", "crm-db", "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+e.agentKey, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return strings.TrimSpace(out.String()), errb.String(), err
	}
	out, stderr, err := run("SELECT name FROM " + e.q("customers") + " WHERE id = 2")
	if err != nil || out != "customer 2" {
		t.Fatalf("psql select: %q %q %v", out, stderr, err)
	}
	_, stderr, err = run("DELETE FROM " + e.q("customers"))
	if err == nil || !strings.Contains(stderr, "warden") || !strings.Contains(stderr, "denied") {
		t.Fatalf("psql runaway delete: %q %v", stderr, err)
	}
	if e.count(t, "customers") != 50 {
		t.Fatal("psql delete ran")
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestWireTLS: with a certificate configured the listener speaks TLS and
// refuses clients that do not.
func TestWireTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	e := newEnv(t, func(c *config.Config) { c.PostgresTLSCert, c.PostgresTLSKey = certFile, keyFile })
	ctx := context.Background()
	cs := fmt.Sprintf("postgres://%s:%s@%s/crm-db?sslmode=require", agentName, url.PathEscape(e.agentKey), e.pgAddr)
	c, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+e.q("customers")).Scan(&n); err != nil || n != 50 {
		t.Fatalf("query over TLS: %d %v", n, err)
	}
	if !c.PgConn().Conn().(interface{ ConnectionState() tls.ConnectionState }).ConnectionState().HandshakeComplete {
		t.Fatal("not TLS")
	}
	_, err = pgx.Connect(ctx, e.connString(agentName, e.agentKey)) // sslmode=disable
	if code, _ := pgErr(err); code != "28000" {
		t.Fatalf("cleartext client: %v", err)
	}
}

func selfSigned(t *testing.T, dir string) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
