package api_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/wardentest"
)

// BenchmarkWhoami measures GET /v1/whoami end to end over loopback HTTP
// with an access token (cached verification), server and load generator in
// one process sharing the machine's cores. Reports requests per second.
func BenchmarkWhoami(b *testing.B) {
	s := wardentest.StartServer(b, wardentest.ServerOptions{})
	id, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "bench-agent", Type: "ai_agent", Owner: "bench@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	k, _ := s.Root.CreateKey(ctx, id.ID, 0)
	tok, err := s.Client("").Token(ctx, "", k.Key)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	auth := "Bearer " + tok.AccessToken
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", s.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", auth)
		for pb.Next() {
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
