package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/apitype"
	"warden/internal/wardentest"
)

var ctx = context.Background()

func TestMain(m *testing.M) {
	// The test binary doubles as a stdio MCP server for the stdio tests.
	if len(os.Args) > 1 && os.Args[1] == stdioMarker {
		runStdioUpstream()
		return
	}
	os.Exit(m.Run())
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// agent connects the SDK's own client to Warden's /mcp with an agent token.
func agent(t testing.TB, s *wardentest.Server, token string) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "test-agent", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   s.URL + "/mcp",
		HTTPClient: &http.Client{Transport: &bearer{token: token, base: http.DefaultTransport}},
		MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatalf("connecting to Warden's MCP endpoint: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// do sends an admin or raw request and returns status, headers and body.
func do(t testing.TB, s *wardentest.Server, method, path, token, ctype, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func mustDo(t testing.TB, s *wardentest.Server, method, path, ctype, body string, want int) []byte {
	t.Helper()
	st, _, b := do(t, s, method, path, s.RootToken, ctype, body)
	if st != want {
		t.Fatalf("%s %s: %d %s (want %d)", method, path, st, b, want)
	}
	return b
}

// newAgent creates an identity with a key and returns the key.
func newAgent(t testing.TB, s *wardentest.Server, name string) string {
	t.Helper()
	if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: name, Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	k, err := s.Root.CreateKey(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k.Key
}

func putPolicy(t testing.TB, s *wardentest.Server, name, doc string) {
	t.Helper()
	if _, err := s.Root.PutPolicy(ctx, name, []byte(doc), "application/yaml"); err != nil {
		t.Fatalf("policy %s: %v", name, err)
	}
}

func toolNames(t testing.TB, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func callTool(t testing.TB, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

func text(r *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func structured(t testing.TB, r *sdk.CallToolResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(r.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return m
}
