package credential_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"warden"
	"warden/internal/credential"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// pgTarget is a database the dynamic credential administers: the test
// cluster, with two fresh schemas (crm, which the grants cover, and hr,
// which they do not).
type pgTarget struct {
	dsn, crm, hr string
	admin        *pgx.Conn
}

func newPGTarget(t testing.TB) *pgTarget {
	t.Helper()
	dsn := os.Getenv(wardentest.PostgresDSNEnv)
	if dsn == "" {
		t.Skip(wardentest.PostgresDSNEnv + " not set; skipping PostgreSQL test")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres unreachable: %v", err)
	}
	sfx := strings.ToLower(warden.RandomString(8))
	p := &pgTarget{dsn: dsn, crm: "crm_" + sfx, hr: "hr_" + sfx, admin: conn}
	for _, q := range []string{
		`CREATE SCHEMA ` + p.crm, `CREATE TABLE ` + p.crm + `.contacts (id int, name text)`, `CREATE TABLE ` + p.crm + `.deals (id int)`,
		`INSERT INTO ` + p.crm + `.contacts VALUES (1, 'Ada')`,
		`CREATE SCHEMA ` + p.hr, `CREATE TABLE ` + p.hr + `.salaries (id int)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(ctx, `DROP SCHEMA `+p.crm+` CASCADE`)
		_, _ = conn.Exec(ctx, `DROP SCHEMA `+p.hr+` CASCADE`)
		conn.Close(ctx)
	})
	return p
}

func (p *pgTarget) grants() []any {
	return []any{"GRANT USAGE ON SCHEMA " + p.crm + " TO {{role}}", "GRANT SELECT ON ALL TABLES IN SCHEMA " + p.crm + " TO {{role}}"}
}

func (p *pgTarget) roleExists(t testing.TB, role string) bool {
	t.Helper()
	var ok bool
	if err := p.admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// tableGrants lists "schema.table:privilege" held by role.
func (p *pgTarget) tableGrants(t *testing.T, role string) []string {
	t.Helper()
	rows, err := p.admin.Query(ctx, `SELECT table_schema || '.' || table_name || ':' || privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 ORDER BY 1`, role)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// connectAs logs in with the lease.
func connectAs(l *credential.Lease) (*pgx.Conn, error) {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(l.User, l.Password.Reveal()), Host: l.Host + ":" + strconv.Itoa(int(l.Port)), Path: "/" + l.Database, RawQuery: "sslmode=disable"}
	return pgx.Connect(ctx, u.String())
}

// verifierMatches checks the stored SCRAM verifier against password (the
// test cluster trusts local logins, so a successful login alone would not
// prove the password; this does).
func (p *pgTarget) verifierMatches(t *testing.T, role, password string) bool {
	t.Helper()
	var stored string
	if err := p.admin.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
	head, keys, _ := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$"), "$")
	iterS, saltB64, _ := strings.Cut(head, ":")
	storedB64, _, _ := strings.Cut(keys, ":")
	iter, _ := strconv.Atoi(iterS)
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	h := hmac.New(sha256.New, salted)
	h.Write([]byte("Client Key"))
	sk := sha256.Sum256(h.Sum(nil))
	return base64.StdEncoding.EncodeToString(sk[:]) == storedB64
}

func pgEnv(t testing.TB, p *pgTarget, ttl string) (*env, *credential.Credential) {
	e := newEnv(t, nil)
	cfg := map[string]any{"grants": p.grants()}
	if ttl != "" {
		cfg["ttl"] = ttl
	}
	c := e.create(t, credential.CreateInput{Name: "crm-db", Type: credential.TypePostgresDynamic, Connector: "crmdb",
		Secret: map[string]string{"admin_dsn": p.dsn}, Config: cfg})
	return e, c
}

func TestPostgresDynamicLease(t *testing.T) {
	p := newPGTarget(t)
	e, _ := pgEnv(t, p, "")
	e.clock.t = time.Now().UTC() // VALID UNTIL is judged by PostgreSQL's clock

	l, err := e.svc.Lease(ctx, "crmdb", "nhi_agent1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.User, "warden_nhiagent1_") || l.Host != "127.0.0.1" || l.Port != 5432 || l.Database != "test" {
		t.Fatalf("lease: %+v", l)
	}
	if want := e.clock.Now().Add(15 * time.Minute); l.ExpiresAt.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("default ttl: expires %s, want %s", l.ExpiresAt, want)
	}
	if !p.roleExists(t, l.User) || !p.verifierMatches(t, l.User, l.Password.Reveal()) {
		t.Fatal("role missing or password not the one handed out")
	}
	var validUntil time.Time
	if err := p.admin.QueryRow(ctx, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, l.User).Scan(&validUntil); err != nil || !validUntil.Equal(l.ExpiresAt) {
		t.Fatalf("VALID UNTIL %s, lease expires %s (%v)", validUntil, l.ExpiresAt, err)
	}
	// Exactly the grants: SELECT on crm's tables, nothing else.
	if got, want := p.tableGrants(t, l.User), []string{p.crm + ".contacts:SELECT", p.crm + ".deals:SELECT"}; !slices.Equal(got, want) {
		t.Fatalf("grants %v, want %v", got, want)
	}
	conn, err := connectAs(l)
	if err != nil {
		t.Fatalf("cannot log in as the leased role: %v", err)
	}
	var name, user string
	if err := conn.QueryRow(ctx, `SELECT name, current_user FROM `+p.crm+`.contacts`).Scan(&name, &user); err != nil || name != "Ada" || user != l.User {
		t.Fatalf("select as leased role: %v %s %s", err, name, user)
	}
	for _, q := range []string{`INSERT INTO ` + p.crm + `.contacts VALUES (2, 'Eve')`, `SELECT * FROM ` + p.hr + `.salaries`} {
		_, err := conn.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("%s: want permission denied, got %v", q, err)
		}
	}

	// Reuse within the lease, for the same identity only.
	again, err := e.svc.Lease(ctx, "crmdb", "nhi_agent1")
	if err != nil || again.ID != l.ID {
		t.Fatalf("lease not reused: %v", err)
	}
	e.svc.Purge() // from the store, not the cache
	again, err = e.svc.Lease(ctx, "crmdb", "nhi_agent1")
	if err != nil || again.ID != l.ID || again.Password.Reveal() != l.Password.Reveal() {
		t.Fatalf("lease not reused from the store: %v", err)
	}
	other, err := e.svc.Lease(ctx, "crmdb", "nhi_agent2")
	if err != nil || other.ID == l.ID || other.User == l.User {
		t.Fatalf("second identity shares a role: %v", err)
	}
	// Resolve hands the same lease to the gate's injector.
	m, err := e.svc.Resolve(ctx, "crmdb", "nhi_agent1")
	if err != nil || m.Lease == nil || m.Lease.ID != l.ID || m.Fields["password"].Reveal() != l.Password.Reveal() {
		t.Fatalf("resolve: %v", err)
	}

	// Near its end the lease is no longer handed out: a new role is minted.
	e.clock.Add(13*time.Minute + 30*time.Second)
	next, err := e.svc.Lease(ctx, "crmdb", "nhi_agent1")
	if err != nil || next.ID == l.ID {
		t.Fatalf("lease near expiry handed out again: %v", err)
	}
	// At expiry the sweeper drops the role and ends its session.
	e.clock.Add(2 * time.Minute)
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if p.roleExists(t, l.User) || p.roleExists(t, other.User) {
		t.Fatal("expired roles not dropped")
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("session of a dropped role still alive")
	}
	if !p.roleExists(t, next.User) {
		t.Fatal("live lease dropped")
	}
	infos, err := e.svc.ListLeases(ctx, admin, credential.LeaseFilter{})
	if err != nil || len(infos) != 3 {
		t.Fatalf("list: %v %d", err, len(infos))
	}
	states := map[string]string{}
	for _, i := range infos {
		states[i.ID] = i.State
		if i.Credential != "crm-db" {
			t.Fatalf("lease lists credential %q", i.Credential)
		}
	}
	if states[l.ID] != "dropped" || states[next.ID] != "active" {
		t.Fatalf("states %v", states)
	}

	// Revocation drops the role at once and the next use mints another.
	info, err := e.svc.RevokeLease(ctx, admin, next.ID)
	if err != nil || info.State != "dropped" || !strings.HasPrefix(info.EndReason, "revoked by admin:root") {
		t.Fatalf("revoke: %v %+v", err, info)
	}
	if p.roleExists(t, next.User) {
		t.Fatal("revoked role still exists")
	}
	fresh, err := e.svc.Lease(ctx, "crmdb", "nhi_agent1")
	if err != nil || fresh.ID == next.ID {
		t.Fatalf("after revoke: %v", err)
	}
	_, err = e.svc.RevokeLease(ctx, admin, "lease_nonexistent")
	wantCode(t, err, warden.CodeNotFound)

	// Suspending the identity drops its roles.
	e.svc.IdentityChanged("nhi_agent1", false)
	e.svc.Wait()
	if p.roleExists(t, fresh.User) {
		t.Fatal("suspended identity's role not dropped")
	}
	// Deleting the credential drops what is left.
	live, err := e.svc.Lease(ctx, "crmdb", "nhi_agent3")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, admin, "crm-db"); err != nil {
		t.Fatal(err)
	}
	if p.roleExists(t, live.User) {
		t.Fatal("role outlived its credential")
	}
}

func TestPostgresDynamicRestartSweepsExpiredRoles(t *testing.T) {
	p := newPGTarget(t)
	e, _ := pgEnv(t, p, "1m")
	e.clock.t = time.Now().UTC()
	l, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
	if err != nil {
		t.Fatal(err)
	}
	// "Restart": a new service on the same store, an hour later.
	e.clock.Add(time.Hour)
	restarted := credential.New(credential.Options{Store: e.st, Sealer: e.keys, Now: e.clock.Now})
	if !p.roleExists(t, l.User) {
		t.Fatal("role vanished before the sweep")
	}
	if err := restarted.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if p.roleExists(t, l.User) {
		t.Fatal("expired role from before the restart not swept")
	}
}

func TestPostgresDynamicFailuresLeaveNothing(t *testing.T) {
	p := newPGTarget(t)
	e := newEnv(t, nil)
	// A grant that fails half-way: the role must not survive.
	e.create(t, credential.CreateInput{Name: "bad-grant", Type: credential.TypePostgresDynamic, Connector: "badgrant",
		Secret: map[string]string{"admin_dsn": p.dsn}, Config: map[string]any{"grants": append(p.grants(), "GRANT SELECT ON no_such_table TO {{role}}")}})
	who := "nhi_fail" + strings.ToLower(warden.RandomString(8))
	_, err := e.svc.Lease(ctx, "badgrant", who)
	wantCode(t, err, warden.CodeCredentialUnavailable)
	var n int
	if err := p.admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1`, "warden_"+strings.ReplaceAll(who, "_", "")+"_%").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d half-created roles (%v)", n, err)
	}
	// Admin connection down: a clear error, no role, no lease record.
	e.create(t, credential.CreateInput{Name: "down", Type: credential.TypePostgresDynamic, Connector: "down",
		Secret: map[string]string{"admin_dsn": "postgres://postgres:pw@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"}, Config: map[string]any{"grants": p.grants()}})
	_, err = e.svc.Lease(ctx, "down", "nhi_a")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	if !strings.Contains(err.Error(), "cannot create a database role") || !strings.Contains(err.Error(), "cannot connect") {
		t.Fatalf("unclear error: %v", err)
	}
	leases, _ := e.svc.ListLeases(ctx, admin, credential.LeaseFilter{})
	if len(leases) != 0 {
		t.Fatalf("%d lease records left by failed creations", len(leases))
	}
	// The wrong type for a lease.
	e.create(t, credential.CreateInput{Name: "tok", Type: "bearer", Connector: "tok", Secret: map[string]string{"token": "t"}})
	_, err = e.svc.Lease(ctx, "tok", "nhi_a")
	wantCode(t, err, warden.CodeCredentialUnavailable)
	_, err = e.svc.Lease(ctx, "nothing", "nhi_a")
	wantCode(t, err, warden.CodeNoCredential)
}

func TestPostgresDynamicScheduledRotationEndsLeases(t *testing.T) {
	p := newPGTarget(t)
	e := newEnv(t, nil)
	e.clock.t = time.Now().UTC()
	e.create(t, credential.CreateInput{Name: "crm-db", Type: credential.TypePostgresDynamic, Connector: "crmdb", Rotation: 5 * time.Minute,
		Secret: map[string]string{"admin_dsn": p.dsn}, Config: map[string]any{"grants": p.grants(), "ttl": "1h"}})
	l, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(5 * time.Minute)
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if p.roleExists(t, l.User) {
		t.Fatal("scheduled rotation left the lease's role")
	}
	c, _ := e.svc.Get(ctx, admin, "crm-db")
	if !c.RotatedAt.Equal(e.clock.Now().Truncate(time.Microsecond)) || c.RotationDue(e.clock.Now()) {
		t.Fatalf("rotation not recorded: %s", c.RotatedAt)
	}
	n, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
	if err != nil || n.ID == l.ID {
		t.Fatalf("no new lease after rotation: %v", err)
	}
	if err := e.svc.Delete(ctx, admin, "crm-db"); err != nil || p.roleExists(t, n.User) {
		t.Fatalf("delete did not drop the role: %v", err)
	}
}

// TestLeasesOnBothEngines: the lease lifecycle with Warden's own data on
// SQLite and on PostgreSQL (the lease store's SQL on both).
func TestLeasesOnBothEngines(t *testing.T) {
	p := newPGTarget(t)
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnvOn(t, st, nil)
		e.clock.t = time.Now().UTC()
		e.create(t, credential.CreateInput{Name: "crm-db", Type: credential.TypePostgresDynamic, Connector: "crmdb",
			Secret: map[string]string{"admin_dsn": p.dsn}, Config: map[string]any{"grants": p.grants(), "ttl": "10m"}})
		l, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
		if err != nil {
			t.Fatal(err)
		}
		e.svc.Purge()
		if again, err := e.svc.Lease(ctx, "crmdb", "nhi_a"); err != nil || again.ID != l.ID {
			t.Fatalf("reuse from the store: %v", err)
		}
		if ls, err := e.svc.ListLeases(ctx, admin, credential.LeaseFilter{ActiveAt: e.clock.Now()}); err != nil || len(ls) != 1 {
			t.Fatalf("active list: %v %d", err, len(ls))
		}
		e.clock.Add(10 * time.Minute)
		if err := e.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if p.roleExists(t, l.User) {
			t.Fatal("expired role not dropped")
		}
		ls, err := e.svc.ListLeases(ctx, admin, credential.LeaseFilter{})
		if err != nil || len(ls) != 1 || ls[0].State != "dropped" || ls[0].EndReason != "expired" {
			t.Fatalf("after sweep: %v %+v", err, ls)
		}
	})
}
