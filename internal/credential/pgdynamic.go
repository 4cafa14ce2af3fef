package credential

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"warden"
)

// TypePostgresDynamic is a credential that mints a short-lived PostgreSQL
// role per identity: secret {admin_dsn}; config {grants: [SQL with a
// {{role}} placeholder], ttl?, host?, port?, database?, sslmode?}. host,
// port and database default to the admin DSN's and tell clients where to
// connect.
const TypePostgresDynamic = "postgres_dynamic"

// PrefixLease starts every lease id.
const PrefixLease = "lease_"

// Bounds of a lease's time to live.
const (
	minLeaseTTL = time.Minute
	maxLeaseTTL = 24 * time.Hour
)

func init() {
	registerSpec(TypePostgresDynamic, &typeSpec{required: []string{"admin_dsn"}, secret: checkAdminDSN, config: pgConfig})
}

// checkAdminDSN parses the admin DSN. Its errors never quote the DSN (it
// holds the admin password).
func checkAdminDSN(f map[string]string) error {
	dsn := f["admin_dsn"]
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return warden.FieldError("secret.admin_dsn", "must be a postgres:// or postgresql:// URL")
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return warden.FieldError("secret.admin_dsn", "is not a valid PostgreSQL connection URL")
	}
	return nil
}

// pgConfig checks a postgres_dynamic config.
func pgConfig(cfg map[string]any, _ *Options) error {
	for k := range cfg {
		switch k {
		case "grants", "ttl", "host", "port", "database", "sslmode":
		default:
			return warden.FieldError("config."+k, "is not a setting of postgres_dynamic credentials (grants, ttl, host, port, database, sslmode)")
		}
	}
	grants, err := pgGrants(cfg)
	if err != nil {
		return err
	}
	if len(grants) == 0 {
		return warden.FieldError("config.grants", "is required: SQL statements with a {{role}} placeholder that give the leased role its rights")
	}
	if _, err := pgTTL(cfg, 0); err != nil {
		return err
	}
	for _, k := range []string{"host", "database", "sslmode"} {
		if v, ok := cfg[k]; ok {
			if sv, isStr := v.(string); !isStr || sv == "" {
				return warden.FieldError("config."+k, "must be a non-empty string")
			}
		}
	}
	if v, ok := cfg["port"]; ok {
		if p, err := portOf(v); err != nil || p == 0 {
			return warden.FieldError("config.port", "must be a port number")
		}
	}
	return nil
}

func pgGrants(cfg map[string]any) ([]string, error) {
	var out []string
	switch v := cfg["grants"].(type) {
	case nil:
	case []string:
		out = v
	case []any:
		for _, x := range v {
			sx, ok := x.(string)
			if !ok {
				return nil, warden.FieldError("config.grants", "must be a list of SQL strings")
			}
			out = append(out, sx)
		}
	default:
		return nil, warden.FieldError("config.grants", "must be a list of SQL strings")
	}
	if len(out) > 64 {
		return nil, warden.FieldError("config.grants", "has more than 64 statements")
	}
	for i, g := range out {
		if !strings.Contains(g, "{{role}}") {
			return nil, warden.FieldError(fmt.Sprintf("config.grants[%d]", i), "must name the leased role as {{role}}")
		}
		if len(g) > 4096 {
			return nil, warden.FieldError(fmt.Sprintf("config.grants[%d]", i), "is longer than 4096 bytes")
		}
	}
	return out, nil
}

// pgTTL reads config.ttl (a Go duration such as "15m"), def when absent.
func pgTTL(cfg map[string]any, def time.Duration) (time.Duration, error) {
	v, ok := cfg["ttl"]
	if !ok {
		return def, nil
	}
	sv, _ := v.(string)
	d, err := time.ParseDuration(sv)
	if err != nil || d < minLeaseTTL || d > maxLeaseTTL {
		return 0, warden.FieldError("config.ttl", "must be a duration between %s and %s, e.g. \"15m\"", minLeaseTTL, maxLeaseTTL)
	}
	return d, nil
}

func portOf(v any) (uint16, error) {
	switch x := v.(type) {
	case float64:
		if x >= 1 && x <= 65535 && x == float64(int(x)) {
			return uint16(x), nil
		}
	case int:
		if x >= 1 && x <= 65535 {
			return uint16(x), nil
		}
	case string:
		n, err := strconv.ParseUint(x, 10, 16)
		if err == nil && n > 0 {
			return uint16(n), nil
		}
	}
	return 0, errors.New("bad port")
}

// Lease is a dynamic database role leased to an identity: what the
// database front needs to connect upstream as it. Leases are shared
// between callers: never modify one.
type Lease struct {
	ID         string
	Credential string // credential name
	Connector  string
	IdentityID string
	Host       string
	Port       uint16
	Database   string
	SSLMode    string
	User       string
	Password   warden.Secret
	ExpiresAt  time.Time
}

type leaseEntry struct {
	l       *Lease
	expires int64 // unix nanos: the earlier of the lease's renewal time and the cache bound
}

// renewMargin is how long before its expiry a lease stops being handed
// out (a new one is minted instead), so a client gets a role that stays
// valid for a useful while.
func renewMargin(ttl time.Duration) time.Duration { return min(ttl/4, 2*time.Minute) }

// Lease returns a role leased to identityID for the postgres_dynamic
// credential serving connector (the identity's own binding first, then
// the connector default), reusing the identity's current lease while it is
// well within its TTL and minting a new role otherwise. Errors:
// no_credential, credential_unavailable (wrong type, PostgreSQL or the
// store down: nothing half-created is left), unavailable.
func (s *Service) Lease(ctx context.Context, connector, identityID string) (*Lease, error) {
	key := connector + "\x00" + identityID
	now := s.o.Now()
	if v, ok := s.leaseCache.Load(key); ok {
		e := v.(*leaseEntry)
		if now.UnixNano() < e.expires {
			return e.l, nil
		}
	}
	cred, err := s.binding(ctx, connector, identityID, now)
	if err != nil {
		return nil, err
	}
	l, renew, err := s.leaseFor(ctx, cred, identityID, now)
	if err != nil {
		return nil, err
	}
	s.touch(cred.ID, now)
	s.cachePut(&s.leaseCache, key, &leaseEntry{l: l, expires: minTime(renew, now.Add(s.o.CacheTTL)).UnixNano()})
	return l, nil
}

// leaseFor returns the identity's current lease of cred, or mints one, and
// the time until which it may be handed out.
func (s *Service) leaseFor(ctx context.Context, cred *Credential, identityID string, now time.Time) (*Lease, time.Time, error) {
	if cred.Type != TypePostgresDynamic {
		return nil, time.Time{}, warden.Errorf(warden.CodeCredentialUnavailable, "credential %s is of type %s, not %s", cred.Name, cred.Type, TypePostgresDynamic)
	}
	if s.leases == nil {
		return nil, time.Time{}, warden.Errorf(warden.CodeCredentialUnavailable, "dynamic credentials need a lease store")
	}
	ttl, err := pgTTL(cred.Config, s.o.LeaseTTL)
	if err != nil {
		return nil, time.Time{}, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+" has an invalid config")
	}
	margin := renewMargin(ttl)
	unlock, err := s.lock(ctx, "lease\x00"+cred.ID+"\x00"+identityID)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer unlock()
	fields, err := s.open(ctx, cred, cred.Version)
	if err != nil {
		return nil, time.Time{}, err
	}
	rec, err := s.leases.ActiveLease(ctx, cred.ID, identityID, now.Add(margin))
	switch {
	case err == nil:
		pw, err := s.o.Sealer.Open(rec.Password, leaseAAD(rec.ID))
		if err != nil {
			s.log.Error("lease password does not open", "lease", rec.ID, "err", err)
			return nil, time.Time{}, warden.Wrap(err, warden.CodeCredentialUnavailable, "lease "+rec.ID+" cannot be opened")
		}
		l, err := s.leaseView(cred, fields, rec, string(pw))
		clear(pw)
		return l, rec.ExpiresAt.Add(-margin), err
	case !warden.IsCode(err, warden.CodeNotFound):
		return nil, time.Time{}, warden.Wrap(err, warden.CodeUnavailable, "credential store unavailable")
	}
	rec, pw, err := s.mintLease(ctx, cred, fields, identityID, ttl, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	l, err := s.leaseView(cred, fields, rec, pw)
	return l, rec.ExpiresAt.Add(-margin), err
}

func leaseAAD(id string) []byte { return []byte("lease:" + id + ":password") }

// leaseView builds the Lease handed to the database front: where to
// connect (config overrides, else the admin DSN's host, port, database)
// and as whom.
func (s *Service) leaseView(cred *Credential, fields map[string]string, rec *LeaseRecord, password string) (*Lease, error) {
	pc, err := pgx.ParseConfig(fields["admin_dsn"])
	if err != nil {
		return nil, warden.Errorf(warden.CodeCredentialUnavailable, "credential %s: the admin DSN does not parse", cred.Name)
	}
	l := &Lease{ID: rec.ID, Credential: cred.Name, Connector: rec.Connector, IdentityID: rec.IdentityID,
		Host: pc.Host, Port: pc.Port, Database: pc.Database, SSLMode: "prefer",
		User: rec.Role, Password: warden.NewSecret(password), ExpiresAt: rec.ExpiresAt}
	if v, ok := cred.Config["host"].(string); ok {
		l.Host = v
	}
	if v, ok := cred.Config["port"]; ok {
		if p, err := portOf(v); err == nil {
			l.Port = p
		}
	}
	if v, ok := cred.Config["database"].(string); ok {
		l.Database = v
	}
	if v, ok := cred.Config["sslmode"].(string); ok {
		l.SSLMode = v
	}
	return l, nil
}

// roleName derives a role name that needs no quoting and cannot collide:
// "warden_", up to 20 letters and digits of the identity id, "_", 16
// random characters (80 bits). At most 44 bytes (PostgreSQL allows 63).
func roleName(identityID string) string {
	var b strings.Builder
	b.WriteString("warden_")
	n := 0
	for _, r := range strings.ToLower(identityID) {
		if n == 20 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			n++
		}
	}
	b.WriteString("_")
	b.WriteString(warden.RandomString(16))
	return b.String()
}

// mintLease records a lease, then creates its role. The record comes
// first so that a crash between the two leaves a record the sweeper acts
// on (it drops the role, if it exists, once the lease has expired); a
// failed creation leaves no role (one transaction) and removes the record.
func (s *Service) mintLease(ctx context.Context, cred *Credential, fields map[string]string, identityID string, ttl time.Duration, now time.Time) (*LeaseRecord, string, error) {
	grants, err := pgGrants(cred.Config)
	if err != nil || len(grants) == 0 {
		return nil, "", warden.Errorf(warden.CodeCredentialUnavailable, "credential %s has no valid grants", cred.Name)
	}
	password := base64.RawURLEncoding.EncodeToString(randomBytes(24))
	rec := &LeaseRecord{
		ID: PrefixLease + warden.RandomString(20), CredentialID: cred.ID, Connector: cred.Connector, IdentityID: identityID,
		Role: roleName(identityID), CreatedAt: now.UTC(), ExpiresAt: now.UTC().Add(ttl).Truncate(time.Microsecond),
	}
	rec.Password, err = s.o.Sealer.Seal([]byte(password), leaseAAD(rec.ID))
	if err != nil {
		return nil, "", warden.Wrap(err, warden.CodeUnavailable, "sealing the lease password")
	}
	change := warden.NewChange(warden.Principal{Kind: warden.PrincipalIdentity, ID: identityID}, "lease.create", "lease", rec.ID,
		map[string]any{"credential": cred.Name, "role": rec.Role, "expires_at": rec.ExpiresAt})
	if err := s.leases.CreateLease(ctx, rec, change); err != nil {
		return nil, "", warden.Wrap(err, warden.CodeUnavailable, "credential store unavailable")
	}
	if err := createRole(ctx, fields["admin_dsn"], rec, password, grants); err != nil {
		if derr := s.leases.DeleteLease(context.WithoutCancel(ctx), rec.ID); derr != nil {
			s.log.Warn("removing the record of a lease whose role was not created", "lease", rec.ID, "err", derr)
		}
		s.log.Error("creating a dynamic PostgreSQL role failed", "credential", cred.Name, "lease", rec.ID, "err", err)
		return nil, "", warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+": cannot create a database role")
	}
	return rec, password, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail on supported platforms
	return b
}

// connectAdmin opens the admin connection with a bounded wait.
func connectAdmin(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("the admin DSN does not parse")
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 10*time.Second {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, safePgErr(err)
	}
	return conn, nil
}

// safePgErr keeps a PostgreSQL error's code and message and drops anything
// else (connection strings, statements).
func safePgErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("postgresql: %s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return errors.New("postgresql: cannot connect with the admin DSN")
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errors.New("postgresql: timed out")
	}
	return errors.New("postgresql: connection failed")
}

// createRole creates the leased role and applies the grants in one
// transaction: on any failure nothing is left behind. The password is
// sent as a SCRAM-SHA-256 verifier, so the plaintext never reaches the
// server (nor its statement log).
func createRole(ctx context.Context, dsn string, rec *LeaseRecord, password string, grants []string) error {
	conn, err := connectAdmin(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{rec.Role}.Sanitize()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return safePgErr(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	stmts := []string{
		"CREATE ROLE " + ident + " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" +
			" PASSWORD " + quoteLiteral(scramVerifier(password)) + " VALID UNTIL " + quoteLiteral(rec.ExpiresAt.UTC().Format("2006-01-02 15:04:05.999999Z07:00")),
		"COMMENT ON ROLE " + ident + " IS " + quoteLiteral("warden lease "+rec.ID+" for "+rec.IdentityID),
	}
	for _, g := range grants {
		stmts = append(stmts, strings.ReplaceAll(g, "{{role}}", ident))
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			return safePgErr(err)
		}
	}
	return safePgErr0(tx.Commit(ctx))
}

func safePgErr0(err error) error {
	if err == nil {
		return nil
	}
	return safePgErr(err)
}

// dropRole ends the role's sessions, hands anything it owns to the admin
// role, revokes its privileges and drops it. A role that does not exist is
// already dropped.
func dropRole(ctx context.Context, dsn, role string) error {
	conn, err := connectAdmin(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return safePgErr(err)
	}
	if !exists {
		return nil
	}
	// VALID UNTIL stops new logins only; sessions already open end here.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, role); err != nil {
		return safePgErr(err)
	}
	ident := pgx.Identifier{role}.Sanitize()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return safePgErr(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, q := range []string{"REASSIGN OWNED BY " + ident + " TO CURRENT_USER", "DROP OWNED BY " + ident, "DROP ROLE " + ident} {
		if _, err := tx.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			return safePgErr(err)
		}
	}
	return safePgErr0(tx.Commit(ctx))
}

// quoteLiteral quotes s as a standard SQL string literal. Only used for
// values Warden generates (verifier, timestamp, comment of ids).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// scramVerifier returns PostgreSQL's SCRAM-SHA-256 verifier for password
// (RFC 5802/7677, the form pg_authid stores).
func scramVerifier(password string) string {
	const iter = 4096
	salt := randomBytes(16)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	clear(salted)
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, enc(salt), enc(stored[:]), enc(serverKey))
}

// LeaseInfo is a lease as listed: no password.
type LeaseInfo struct {
	ID         string
	Credential string
	Connector  string
	IdentityID string
	Role       string
	State      string // active | ended | dropped
	CreatedAt  time.Time
	ExpiresAt  time.Time
	EndedAt    *time.Time
	EndReason  string
	DroppedAt  *time.Time
}

// ListLeases lists leases, newest first.
func (s *Service) ListLeases(ctx context.Context, p warden.Principal, f LeaseFilter) ([]LeaseInfo, error) {
	if !canRead(p) {
		return nil, errRead
	}
	if s.leases == nil {
		return nil, nil
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	recs, err := s.leases.ListLeases(ctx, f)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	now := s.o.Now()
	out := make([]LeaseInfo, 0, len(recs))
	for _, r := range recs {
		name, ok := names[r.CredentialID]
		if !ok {
			if c, err := s.o.Store.CredentialByID(ctx, r.CredentialID); err == nil {
				name = c.Name
			}
			names[r.CredentialID] = name
		}
		out = append(out, LeaseInfo{ID: r.ID, Credential: name, Connector: r.Connector, IdentityID: r.IdentityID, Role: r.Role,
			State: r.State(now), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, EndedAt: r.EndedAt, EndReason: r.EndReason, DroppedAt: r.DroppedAt})
	}
	return out, nil
}

// RevokeLease ends a lease now and drops its role. If the database cannot
// be reached, the lease stays ended (never handed out again) and the
// sweeper drops the role later; the error says so.
func (s *Service) RevokeLease(ctx context.Context, p warden.Principal, id string) (*LeaseInfo, error) {
	if !canWrite(p) {
		return nil, errWrite
	}
	if s.leases == nil {
		return nil, warden.Errorf(warden.CodeNotFound, "lease %q not found", id)
	}
	rec, err := s.leases.GetLease(ctx, id)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "lease %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	if err := s.endAndDrop(ctx, p, rec, "revoked by "+p.Actor()); err != nil {
		return nil, err
	}
	rec, err = s.leases.GetLease(ctx, id)
	if err != nil {
		return nil, err
	}
	name := ""
	if c, err := s.o.Store.CredentialByID(ctx, rec.CredentialID); err == nil {
		name = c.Name
	}
	return &LeaseInfo{ID: rec.ID, Credential: name, Connector: rec.Connector, IdentityID: rec.IdentityID, Role: rec.Role,
		State: rec.State(s.o.Now()), CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt, EndedAt: rec.EndedAt, EndReason: rec.EndReason, DroppedAt: rec.DroppedAt}, nil
}

// endAndDrop ends rec (recording who did it) and drops its role.
func (s *Service) endAndDrop(ctx context.Context, p warden.Principal, rec *LeaseRecord, reason string) error {
	now := s.o.Now().UTC()
	change := warden.NewChange(p, "lease.revoke", "lease", rec.ID, map[string]any{"reason": reason, "role": rec.Role})
	if _, err := s.leases.EndLease(ctx, rec.ID, now, reason, &change); err != nil {
		return err
	}
	s.leaseCache.Clear()
	s.cache.Clear()
	s.cacheN.Store(0)
	if rec.DroppedAt != nil {
		return nil
	}
	return s.drop(ctx, rec)
}

// drop drops a lease's role and marks the lease dropped.
func (s *Service) drop(ctx context.Context, rec *LeaseRecord) error {
	cred, err := s.o.Store.CredentialByID(ctx, rec.CredentialID)
	if err != nil {
		return warden.Wrap(err, warden.CodeUnavailable, "cannot load the credential of lease "+rec.ID)
	}
	fields, err := s.open(ctx, cred, cred.Version)
	if err != nil {
		return err
	}
	if err := dropRole(ctx, fields["admin_dsn"], rec.Role); err != nil {
		s.log.Error("dropping a leased PostgreSQL role failed; the sweeper retries", "lease", rec.ID, "role", rec.Role, "err", err)
		return warden.Wrap(err, warden.CodeUnavailable, "lease "+rec.ID+" is ended but its role could not be dropped yet; Warden retries")
	}
	return s.leases.MarkLeaseDropped(ctx, rec.ID, s.o.Now().UTC())
}

// RevokeIdentityLeases ends every active lease of an identity and drops
// the roles.
func (s *Service) RevokeIdentityLeases(ctx context.Context, identityID, reason string) error {
	if s.leases == nil {
		return nil
	}
	recs, err := s.leases.ListLeases(ctx, LeaseFilter{IdentityID: identityID, ActiveAt: s.o.Now()})
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		errs = append(errs, s.endAndDrop(ctx, warden.Principal{}, r, reason))
	}
	return errors.Join(errs...)
}

// dropAllLeases ends every lease of cred that still has a role and drops
// them all; any failure stops the caller (credential delete).
func (s *Service) dropAllLeases(ctx context.Context, p warden.Principal, cred *Credential) error {
	if s.leases == nil {
		return nil
	}
	recs, err := s.leases.ListLeases(ctx, LeaseFilter{CredentialID: cred.ID})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.DroppedAt != nil {
			continue
		}
		if err := s.endAndDrop(ctx, p, r, "credential deleted"); err != nil {
			return warden.Wrap(err, warden.CodeUnavailable, "cannot drop the roles leased from credential "+cred.Name+"; it was not deleted")
		}
	}
	return nil
}
