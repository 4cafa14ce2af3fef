package mcp

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/internal/connector"
)

// TestToolListRefresh: a call never waits for the upstream's tools to be
// listed again while the list is younger than relistAfter (past half that
// age it is refreshed in the background, after the call used it), and a
// list older than relistAfter is listed again before the call goes on.
func TestToolListRefresh(t *testing.T) {
	var lists atomic.Int64
	hold := make(chan struct{})
	listing := make(chan struct{}, 1)
	var holding atomic.Bool
	srv := sdk.NewServer(&sdk.Implementation{Name: "up", Version: "1"}, nil)
	srv.AddTool(&sdk.Tool{Name: "t", Description: "A tool.", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return &sdk.CallToolResult{}, nil
	})
	srv.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if method == "tools/list" {
				lists.Add(1)
				if holding.Load() {
					listing <- struct{}{}
					<-hold
				}
			}
			return next(ctx, method, req)
		}
	})
	ct, st := sdk.NewInMemoryTransports()
	ss, err := srv.Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "warden", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	g := New(Options{})
	l := &link{g: g, conn: &connector.Connector{Doc: &connector.Document{}, Name: "up", Timeout: 5 * time.Second}, session: cs}

	if _, ok, err := l.current(t.Context(), cs, "t"); err != nil || !ok || lists.Load() != 1 {
		t.Fatalf("first call: ok=%v err=%v lists=%d", ok, err, lists.Load())
	}
	if _, ok, _ := l.current(t.Context(), cs, "t"); !ok || lists.Load() != 1 {
		t.Fatalf("a fresh list was listed again: lists=%d", lists.Load())
	}

	// Past half of relistAfter: the call is answered from the list while
	// the refresh (held here) runs in the background.
	l.mu.Lock()
	l.listedAt = time.Now().Add(-relistAfter * 3 / 4)
	l.mu.Unlock()
	holding.Store(true)
	done := make(chan bool)
	go func() {
		_, ok, _ := l.current(context.Background(), cs, "t")
		done <- ok
	}()
	select {
	case <-listing:
	case <-time.After(10 * time.Second):
		t.Fatal("a list past half its age was not refreshed")
	}
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("tool missing from the list in force")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call waited for the background listing")
	}
	holding.Store(false)
	close(hold)
	for range 100 {
		l.mu.Lock()
		fresh := time.Since(l.listedAt) < relistAfter/2
		l.mu.Unlock()
		if fresh {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := lists.Load(); n != 2 {
		t.Fatalf("lists after the background refresh: %d, want 2", n)
	}

	// Past relistAfter: listed again before the call goes on.
	l.mu.Lock()
	l.listedAt = time.Now().Add(-relistAfter - time.Second)
	l.mu.Unlock()
	if _, ok, err := l.current(t.Context(), cs, "t"); err != nil || !ok || lists.Load() != 3 {
		t.Fatalf("expired list: ok=%v err=%v lists=%d, want 3", ok, err, lists.Load())
	}
}
