package mcp_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/internal/wardentest"
)

// BenchmarkToolCall measures, in one run against one server, the same
// operations through:
//
//   - execute: POST /v1/execute (the HTTP connector's contacts.get)
//   - mcp-http-tool: tools/call crm__contacts.get through /mcp
//   - upstream-direct: the fake upstream MCP server's list_issues, called
//     with the SDK client directly (no Warden)
//   - mcp-fronted: tools/call gh-mcp__list_issues through /mcp
//
// Each reports p50 and p99 latency in microseconds; the MCP overhead is
// mcp-http-tool minus execute, and mcp-fronted minus upstream-direct.
func BenchmarkToolCall(b *testing.B) {
	s := wardentest.StartServer(b, wardentest.ServerOptions{})
	u := newCRM(b)
	up := newFakeUpstream(b, "bench-token")
	mustDo(b, s, "PUT", "/v1/connectors/crm", "application/yaml", `apiVersion: warden/v1
kind: Connector
base_url: `+u.URL+`
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: contacts.get, method: GET, path: "/contacts/{id}", class: read}
`, 201)
	mustDo(b, s, "POST", "/v1/credentials", "application/json", `{"name":"crm-token","type":"bearer","connector":"crm","secret":{"token":"crm-upstream-secret"}}`, 201)
	mustDo(b, s, "POST", "/v1/credentials", "application/json", `{"name":"gh-token","type":"bearer","connector":"gh-mcp","secret":{"token":"bench-token"}}`, 201)
	mustDo(b, s, "PUT", "/v1/connectors/gh-mcp", "application/yaml", "apiVersion: warden/v1\nkind: Connector\ntype: mcp\nallow_private_network: true\nauth: {type: bearer}\nmcp: {url: \""+up.URL+"\"}\n", 201)
	key := newAgent(b, s, "bench-bot")
	putPolicy(b, s, "bench-bot", `apiVersion: warden/v1
kind: Policy
subjects: [{identity: bench-bot}]
rules: [{id: all, effect: allow, actions: ["crm:contacts.get", "gh-mcp:list_issues"]}]
`)
	cs := agent(b, s, key)
	direct, err := sdk.NewClient(&sdk.Implementation{Name: "direct", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: up.URL, HTTPClient: &http.Client{Transport: &bearer{token: "bench-token", base: http.DefaultTransport}}, MaxRetries: -1,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	hc := &http.Client{}
	cases := []struct {
		name string
		call func() error
	}{
		{"execute", func() error {
			req, _ := http.NewRequest("POST", s.URL+"/v1/execute", strings.NewReader(`{"connector":"crm","operation":"contacts.get","resource":{"id":"42"}}`))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("execute: %d", resp.StatusCode)
			}
			return nil
		}},
		{"mcp-http-tool", func() error {
			r, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "crm__contacts.get", Arguments: map[string]any{"id": "42"}})
			if err == nil && r.IsError {
				b.Fatalf("tool error: %s", text(r))
			}
			return err
		}},
		{"upstream-direct", func() error {
			_, err := direct.CallTool(ctx, &sdk.CallToolParams{Name: "list_issues", Arguments: map[string]any{"repo": "acme/app", "title": ""}})
			return err
		}},
		{"mcp-fronted", func() error {
			r, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "gh-mcp__list_issues", Arguments: map[string]any{"repo": "acme/app", "title": ""}})
			if err == nil && r.IsError {
				b.Fatalf("tool error: %s", text(r))
			}
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
			}
		})
	}
}
