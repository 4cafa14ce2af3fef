package credential_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"warden/internal/credential"
)

// reportP50 runs op b.N times, timing each call, and reports the median
// next to the mean that testing.B prints.
func reportP50(b *testing.B, op func()) {
	b.Helper()
	samples := make([]time.Duration, 0, min(b.N, 1<<20))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		op()
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(t0))
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
}

// BenchmarkResolveInjectWarm: a cached static credential resolved and
// injected into an outgoing request, as the proxy does per call.
func BenchmarkResolveInjectWarm(b *testing.B) {
	e := newEnv(b, func(o *credential.Options) { o.Now = time.Now })
	e.create(b, credential.CreateInput{Name: "gh", Type: "bearer", Connector: "github", Secret: map[string]string{"token": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"}})
	req := httptest.NewRequest(http.MethodGet, "https://api.github.com/repos/a/b", nil)
	if _, err := e.svc.Resolve(ctx, "github", "nhi_a"); err != nil {
		b.Fatal(err)
	}
	reportP50(b, func() {
		m, err := e.svc.Resolve(ctx, "github", "nhi_a")
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+m.Fields["token"].Reveal())
	})
}

// BenchmarkResolveInjectOAuthWarm: the same with an OAuth access token.
func BenchmarkResolveInjectOAuthWarm(b *testing.B) {
	ts := &tokenServer{}
	ts.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":3600}`))
	}))
	defer ts.Close()
	e := newEnv(b, func(o *credential.Options) { o.Now = time.Now; o.RootCAs = ts.roots() })
	e.create(b, credential.CreateInput{Name: "crm", Type: credential.TypeOAuth2ClientCredentials, Connector: "crm",
		Secret: map[string]string{"client_id": "id", "client_secret": "s"}, Config: map[string]any{"token_url": ts.URL + "/token", "allow_private_network": true}})
	req := httptest.NewRequest(http.MethodGet, "https://crm.example.com/contacts", nil)
	if _, err := e.svc.Resolve(ctx, "crm", "nhi_a"); err != nil {
		b.Fatal(err)
	}
	reportP50(b, func() {
		m, err := e.svc.Resolve(ctx, "crm", "nhi_a")
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+m.Fields["token"].Reveal())
	})
}

// BenchmarkLeaseReuse: a dynamic PostgreSQL lease handed out again within
// its TTL (the database front's per-connection cost).
func BenchmarkLeaseReuse(b *testing.B) {
	p := newPGTarget(b)
	e, _ := pgEnv(b, p, "1h")
	e.clock.t = time.Now().UTC()
	l, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
	if err != nil {
		b.Fatal(err)
	}
	reportP50(b, func() {
		got, err := e.svc.Lease(ctx, "crmdb", "nhi_a")
		if err != nil || got.ID != l.ID {
			b.Fatal(err)
		}
	})
	b.StopTimer()
	if _, err := e.svc.RevokeLease(ctx, admin, l.ID); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLeaseFirst: minting a new role (admin connection, CREATE ROLE
// with grants in one transaction, lease record); as measured, no target.
func BenchmarkLeaseFirst(b *testing.B) {
	p := newPGTarget(b)
	e, _ := pgEnv(b, p, "")
	e.clock.t = time.Now().UTC()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = "nhi_bench" + string(rune('a'+i%26)) + time.Now().Format("150405.000000000")
	}
	reportP50(b, func() {
		if _, err := e.svc.Lease(ctx, "crmdb", ids[0]); err != nil {
			b.Fatal(err)
		}
		ids = ids[1:]
	})
	b.StopTimer()
	if err := e.svc.Delete(ctx, admin, "crm-db"); err != nil { // drops every role
		b.Fatal(err)
	}
}
