package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"warden/apitype"
	"warden/internal/credential"
	"warden/internal/seal"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func TestCredentialVersionsAndLeasesAPI(t *testing.T) {
	master := seal.GenerateMasterKey()
	s := wardentest.StartServer(t, wardentest.ServerOptions{MasterKey: master})
	tok := s.RootToken
	const canary = "CANARY-api-token-4242"

	st, _, _, _ := call(t, s, "POST", "/v1/credentials", tok, "application/json",
		`{"name":"gh","type":"bearer","connector":"github","secret":{"token":"`+canary+`-v1"}}`)
	if st != 201 {
		t.Fatalf("create: %d", st)
	}
	if st, _, _, _ := call(t, s, "POST", "/v1/credentials/gh/rotate", tok, "application/json", `{"secret":{"token":"`+canary+`-v2"}}`); st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	st, _, _, body := call(t, s, "GET", "/v1/credentials/gh/versions", tok, "", "")
	var vs apitype.CredentialVersions
	if st != 200 || json.Unmarshal(body, &vs) != nil || len(vs.Versions) != 2 || vs.Versions[0].State != "previous" || vs.Versions[0].RetireAt == nil || vs.Versions[1].State != "current" {
		t.Fatalf("versions: %d %s", st, body)
	}
	if strings.Contains(string(body), canary) {
		t.Fatal("secret in the versions answer")
	}
	if st, _, p, _ := call(t, s, "GET", "/v1/credentials/nope/versions", tok, "", ""); st != 404 || p.Code != "not_found" {
		t.Fatalf("unknown credential: %d %s", st, p.Code)
	}

	// Leases: empty list, bad filters, unknown lease.
	st, _, _, body = call(t, s, "GET", "/v1/leases", tok, "", "")
	if st != 200 || strings.TrimSpace(string(body)) != `{"leases":[]}` {
		t.Fatalf("empty list: %d %s", st, body)
	}
	for _, q := range []string{"?active=maybe", "?limit=0", "?limit=x"} {
		if st, _, p, _ := call(t, s, "GET", "/v1/leases"+q, tok, "", ""); st != 400 || p.Code != "invalid" {
			t.Fatalf("%s: %d %s", q, st, p.Code)
		}
	}
	if st, _, p, _ := call(t, s, "DELETE", "/v1/leases/lease_nope", tok, "", ""); st != 404 || p.Code != "not_found" {
		t.Fatalf("unknown lease: %d %s", st, p.Code)
	}
	// An agent may not see or revoke leases.
	id, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "agent1", Type: "ai_agent", Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.Root.CreateKey(ctx, id.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _, _ := call(t, s, "GET", "/v1/leases", key.Key, "", ""); st != 403 {
		t.Fatalf("agent listed leases: %d", st)
	}

	// A real lease, minted by the vault on the server's database, listed and
	// revoked over the API.
	dsn := os.Getenv(wardentest.PostgresDSNEnv)
	if dsn == "" {
		t.Skip(wardentest.PostgresDSNEnv + " not set; skipping the lease part")
	}
	if st, _, _, b := call(t, s, "POST", "/v1/credentials", tok, "application/json",
		`{"name":"crm-db","type":"postgres_dynamic","connector":"crmdb","secret":{"admin_dsn":"`+dsn+`"},"config":{"grants":["GRANT CONNECT ON DATABASE test TO {{role}}"]}}`); st != 201 {
		t.Fatalf("create postgres_dynamic: %d %s", st, b)
	}
	db, err := store.Open(ctx, store.Options{DataDir: s.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := seal.Open(ctx, master, db)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	vault := credential.New(credential.Options{Store: db, Sealer: keys})
	l, err := vault.Lease(ctx, "crmdb", id.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _, body = call(t, s, "GET", "/v1/leases?active=true&identity=agent1&credential=crm-db", tok, "", "")
	var ll apitype.LeaseList
	if st != 200 || json.Unmarshal(body, &ll) != nil || len(ll.Leases) != 1 || ll.Leases[0].ID != l.ID || ll.Leases[0].Role != l.User || ll.Leases[0].State != "active" {
		t.Fatalf("list: %d %s", st, body)
	}
	if strings.Contains(string(body), l.Password.Reveal()) {
		t.Fatal("lease password in the API answer")
	}
	st, _, _, body = call(t, s, "DELETE", "/v1/leases/"+l.ID, tok, "", "")
	var got apitype.Lease
	if st != 200 || json.Unmarshal(body, &got) != nil || got.State != "dropped" || !strings.HasPrefix(got.EndReason, "revoked by admin:") {
		t.Fatalf("revoke: %d %s", st, body)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, l.User).Scan(&exists); err != nil || exists {
		t.Fatalf("revoked role still exists (%v)", err)
	}
	if st, _, _, _ := call(t, s, "GET", "/v1/leases?active=true", tok, "", ""); st != http.StatusOK {
		t.Fatal(st)
	}
}
