package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/wardentest"
)

// benchAgent starts a server with one identity (labels team=bench) and
// returns it with that identity's access token as an Authorization value.
func benchAgent(b *testing.B) (*wardentest.Server, string) {
	s := wardentest.StartServer(b, wardentest.ServerOptions{})
	id, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "bench-agent", Type: "ai_agent", Owner: "bench@example.com", Labels: map[string]string{"team": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	k, _ := s.Root.CreateKey(ctx, id.ID, 0)
	tok, err := s.Client("").Token(ctx, "", k.Key)
	if err != nil {
		b.Fatal(err)
	}
	return s, "Bearer " + tok.AccessToken
}

// benchHTTP sends req (built fresh per goroutine by mk) in parallel over
// pooled loopback connections, server and load generator in one process
// sharing the machine's cores, and reports requests per second.
func benchHTTP(b *testing.B, mk func() *http.Request) {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Do(mk())
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

// BenchmarkWhoami measures GET /v1/whoami end to end with an access token
// (cached verification).
func BenchmarkWhoami(b *testing.B) {
	s, auth := benchAgent(b)
	benchHTTP(b, func() *http.Request {
		req, _ := http.NewRequest("GET", s.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", auth)
		return req
	})
}

// BenchmarkAuthorize measures POST /v1/authorize end to end: an identity
// asks about itself, the policy's rule has a CEL condition over params and
// the identity's labels, and the answer is allow.
func BenchmarkAuthorize(b *testing.B) {
	s, auth := benchAgent(b)
	if _, err := s.Root.PutPolicy(ctx, "bench", []byte(`apiVersion: warden/v1
kind: Policy
subjects: [{selector: {labels: {team: bench}}}]
rules:
  - id: read-issues
    effect: allow
    actions: ["github:issues.*"]
    when: 'params.repo.startsWith("acme/") && identity.labels.team == "bench"'
  - id: no-deletes
    effect: deny
    actions: ["github:*.delete"]
`), "application/yaml"); err != nil {
		b.Fatal(err)
	}
	const body = `{"identity":"bench-agent","action":"github:issues.get","resource":{"number":42},"params":{"repo":"acme/api"}}`
	mk := func() *http.Request {
		req, _ := http.NewRequest("POST", s.URL+"/v1/authorize", strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	resp, err := http.DefaultClient.Do(mk())
	if err != nil {
		b.Fatal(err)
	}
	var d apitype.Decision
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil || d.Decision != "allow" || d.Rule != "read-issues" {
		b.Fatalf("decision %+v (%v), want allow by read-issues", d, err)
	}
	benchHTTP(b, mk)
}
