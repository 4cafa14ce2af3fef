package api_test

import (
	"net/url"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/wardentest"
)

// TestPostgresOutage cuts the server's database connections mid-run: calls
// that need the database answer 503 (never a crash or a 500), and the server
// recovers by itself when the database returns.
func TestPostgresOutage(t *testing.T) {
	dsn := wardentest.PostgresDSN(t)
	u, _ := url.Parse(dsn)
	proxy := wardentest.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	s := wardentest.StartServer(t, wardentest.ServerOptions{DSN: u.String()})
	if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "before", Type: "bot", Owner: "a@example.com"}); err != nil {
		t.Fatal(err)
	}

	proxy.Down()
	for i := 0; i < 3; i++ {
		status, _, p, body := call(t, s, "POST", "/v1/identities", s.RootToken, "application/json", `{"name":"during-`+string(rune('a'+i))+`","type":"bot","owner":"a@example.com"}`)
		if status != 503 || p.Code != "unavailable" {
			t.Fatalf("during outage: %d %s", status, body)
		}
	}
	if status, _, _, _ := call(t, s, "GET", "/readyz", "", "", ""); status != 503 {
		t.Fatalf("readyz during outage: %d", status)
	}
	if status, _, _, _ := call(t, s, "GET", "/healthz", "", "", ""); status != 200 {
		t.Fatalf("healthz during outage: %d (the process is alive)", status)
	}

	proxy.Up()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "after", Type: "bot", Owner: "a@example.com"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l, err := s.Root.ListIdentities(ctx, nil)
	if err != nil || len(l.Identities) != 2 {
		t.Fatalf("after recovery: %v %+v", err, l)
	}
}
