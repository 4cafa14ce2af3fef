package mcp_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// fakeUpstream is a small MCP server built with the SDK, served over
// streamable HTTP. It requires its own bearer token and records the tool
// calls that reached it.
type fakeUpstream struct {
	*httptest.Server
	srv   *sdk.Server
	mu    sync.Mutex
	calls []string
	auth  []string
	// conns counts the TCP connections clients opened to it.
	conns atomic.Int64
}

func (u *fakeUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.calls)
}

type issueArgs struct {
	Repo  string `json:"repo"`
	Title string `json:"title"`
}

func newFakeUpstream(t testing.TB, token string) *fakeUpstream {
	u := &fakeUpstream{srv: sdk.NewServer(&sdk.Implementation{Name: "fake-github", Version: "1"}, nil)}
	u.addCreateIssue("Create an issue in a repository.")
	sdk.AddTool(u.srv, &sdk.Tool{Name: "list_issues", Description: "List issues.", Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, req *sdk.CallToolRequest, in issueArgs) (*sdk.CallToolResult, any, error) {
			u.record("list_issues " + in.Repo)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "issues of " + in.Repo}}}, nil, nil
		})
	yes := true
	sdk.AddTool(u.srv, &sdk.Tool{Name: "delete_repo", Description: "Delete a repository.", Annotations: &sdk.ToolAnnotations{DestructiveHint: &yes}},
		func(ctx context.Context, req *sdk.CallToolRequest, in issueArgs) (*sdk.CallToolResult, any, error) {
			u.record("delete_repo " + in.Repo)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "deleted"}}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return u.srv }, nil)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	// Warden keeps a stream open to the upstream; cut it so Close returns.
	t.Cleanup(func() { u.CloseClientConnections(); u.Close() })
	return u
}

func (u *fakeUpstream) record(s string) {
	u.mu.Lock()
	u.calls = append(u.calls, s)
	u.mu.Unlock()
}

// addCreateIssue (re)defines create_issue; redefining it is the rug pull.
func (u *fakeUpstream) addCreateIssue(description string) {
	sdk.AddTool(u.srv, &sdk.Tool{Name: "create_issue", Description: description},
		func(ctx context.Context, req *sdk.CallToolRequest, in issueArgs) (*sdk.CallToolResult, any, error) {
			u.record("create_issue " + in.Repo + " " + in.Title)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "created " + in.Repo + "#1"}}}, nil, nil
		})
}

// ---- the stdio upstream: this test binary, started by Warden ----

const stdioMarker = "warden-mcp-stdio-upstream"

// runStdioUpstream serves MCP on stdin/stdout. It writes garbage to stdout
// (before and during the session), reports whether Warden passed the
// credential in UPSTREAM_TOKEN, echoes it (Warden must redact it), crashes
// and hangs on request.
func runStdioUpstream() {
	fmt.Println("starting fake server... this line is not JSON")
	s := sdk.NewServer(&sdk.Implementation{Name: "fake-stdio", Version: "1"}, nil)
	type none struct{}
	sdk.AddTool(s, &sdk.Tool{Name: "check_env", Description: "Reports its environment.", Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, req *sdk.CallToolRequest, _ none) (*sdk.CallToolResult, any, error) {
			fmt.Fprintln(os.Stdout, "garbage in the middle of a session {not json")
			tok := os.Getenv("UPSTREAM_TOKEN")
			leaked := os.Getenv("WARDEN_MASTER_KEY") != ""
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf("token=%s len=%d master_key_visible=%v", tok, len(tok), leaked)}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "crash", Description: "Exits."},
		func(ctx context.Context, req *sdk.CallToolRequest, _ none) (*sdk.CallToolResult, any, error) {
			os.Exit(3)
			return nil, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "hang", Description: "Never answers."},
		func(ctx context.Context, req *sdk.CallToolRequest, _ none) (*sdk.CallToolResult, any, error) {
			select {}
		})
	_ = s.Run(context.Background(), &sdk.StdioTransport{})
}

// eventually retries fn until it reports true (a restarted server comes
// back after the backoff; no fixed sleep decides the outcome).
func eventually(t *testing.T, what string, fn func() bool) {
	t.Helper()
	for range 100 {
		if fn() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not happen", what)
}

var _ = strings.Contains

type ctxT = context.Context
