package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/proxy"
)

// Backoff bounds for reconnecting to an upstream MCP server (restarting a
// stdio server) after it failed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// stableAfter resets the backoff once a session has lasted this long.
	stableAfter = time.Minute
	// refreshEvery bounds how often a flood of list_changed notifications
	// makes Warden list an upstream's tools again.
	refreshEvery = 200 * time.Millisecond
	// relistAfter bounds how long a tool list is trusted without a
	// list_changed notification: an upstream that changes a definition
	// silently is caught on the first call after this. A call that finds
	// the list older than half of it has it listed again in the background,
	// so under steady traffic no call waits for the listing.
	relistAfter = 30 * time.Second
	// maxLine bounds one line a stdio server writes.
	maxLine = 16 << 20
)

// observed is an upstream tool definition as last listed.
type observed struct {
	pin  string
	tool *sdk.Tool
}

// link is Warden's client session to one upstream MCP server for one
// credential (a stdio server runs once per credential version, since its
// credential is in its environment; an HTTP server gets the credential in
// every request's headers). It reconnects after failures with exponential
// backoff; a stdio server that exits is restarted the same way.
type link struct {
	g    *Gateway
	conn *connector.Connector
	cred *credential.Material

	mu                sync.Mutex
	session           *sdk.ClientSession
	cmd               *exec.Cmd
	tools             map[string]observed // by upstream tool name; nil until listed
	listedAt          time.Time
	lastErr           error
	backoff           time.Duration
	nextTry           time.Time
	startedAt         time.Time
	closed            bool
	refreshing, dirty bool
}

func (l *link) log() *slog.Logger { return l.g.log.With("connector", l.conn.Name) }

// ready returns a live session, connecting (or restarting the server) when
// there is none and the backoff allows.
func (l *link) ready(ctx context.Context) (*sdk.ClientSession, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, warden.Errorf(warden.CodeUpstreamUnavailable, "the connection to upstream %s was replaced; retry", l.conn.Name)
	}
	if l.session != nil {
		return l.session, nil
	}
	if now := time.Now(); now.Before(l.nextTry) {
		return nil, warden.Errorf(warden.CodeUpstreamUnavailable, "upstream MCP server %s is unavailable (%v); next attempt in %s", l.conn.Name, l.lastErr, l.nextTry.Sub(now).Round(time.Millisecond))
	}
	cs, cmd, err := l.g.dial(ctx, l.conn, l.cred, l.onListChanged)
	if err != nil {
		l.failed(err)
		return nil, warden.Wrap(err, warden.CodeUpstreamUnavailable, "cannot reach upstream MCP server "+l.conn.Name)
	}
	l.session, l.cmd, l.startedAt = cs, cmd, time.Now()
	go l.watch(cs)
	return cs, nil
}

// failed records a failure and schedules the next attempt. l.mu is held.
func (l *link) failed(err error) {
	l.lastErr = err
	switch {
	case l.backoff == 0 || (!l.startedAt.IsZero() && time.Since(l.startedAt) > stableAfter):
		l.backoff = minBackoff
	default:
		l.backoff = min(2*l.backoff, maxBackoff)
	}
	l.nextTry = time.Now().Add(l.backoff)
	l.startedAt = time.Time{}
}

// watch waits for the session to end (the server exited or the connection
// broke), reaps it and, for a stdio server, restarts it after the backoff:
// Warden supervises the servers it starts.
func (l *link) watch(cs *sdk.ClientSession) {
	err := cs.Wait()
	l.mu.Lock()
	if l.session != cs {
		l.mu.Unlock()
		return
	}
	l.session, l.tools = nil, nil
	if err == nil {
		err = errors.New("the session ended")
	}
	l.failed(err)
	stdio, closed, wait := l.cmd != nil, l.closed, l.backoff
	l.cmd = nil
	l.mu.Unlock()
	if closed {
		return
	}
	l.log().Warn("mcp: upstream session ended", "err", err, "retry_in", wait.String())
	if !stdio {
		return // an HTTP server is reconnected when next needed
	}
	select {
	case <-l.g.done:
		return
	case <-time.After(wait):
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.conn.Timeout)
	defer cancel()
	if _, err := l.ready(ctx); err != nil {
		l.log().Warn("mcp: restarting stdio server failed", "err", err)
	}
}

// close ends the session and stops a stdio server.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	cs := l.session
	l.session = nil
	l.mu.Unlock()
	if cs != nil {
		_ = cs.Close()
	}
}

// drop ends a session that misbehaved (a call timed out), so the next call
// gets a fresh one.
func (l *link) drop(cs *sdk.ClientSession) {
	l.mu.Lock()
	if l.session == cs {
		l.session, l.tools = nil, nil
		l.failed(errors.New("a call timed out"))
	}
	l.mu.Unlock()
	_ = cs.Close()
}

// current returns the upstream's current definition of tool, listing the
// tools when they are not known yet or were listed more than relistAfter
// ago. A list past half that age is refreshed in the background, after
// this call used it.
func (l *link) current(ctx context.Context, cs *sdk.ClientSession, tool string) (observed, bool, error) {
	l.mu.Lock()
	tools := l.tools
	age := time.Since(l.listedAt)
	if age > relistAfter {
		tools = nil
	}
	soon := tools != nil && age > relistAfter/2 && !l.refreshing
	l.mu.Unlock()
	if tools == nil {
		var err error
		if tools, err = l.list(ctx, cs); err != nil {
			return observed{}, false, err
		}
	}
	if soon {
		l.refresh()
	}
	o, ok := tools[tool]
	return o, ok, nil
}

// list lists the upstream's tools, records them on the link and reports
// the pins to the gateway's drift state.
func (l *link) list(ctx context.Context, cs *sdk.ClientSession) (map[string]observed, error) {
	tools, err := listAll(ctx, cs)
	if err != nil {
		return nil, err
	}
	m := make(map[string]observed, len(tools))
	for _, t := range tools {
		pin, err := connector.ToolPin(t.Name, t.Description, orEmpty(t.InputSchema))
		if err != nil {
			continue
		}
		m[t.Name] = observed{pin: pin, tool: t}
	}
	l.mu.Lock()
	if l.session == cs {
		l.tools, l.listedAt = m, time.Now()
	}
	l.mu.Unlock()
	l.g.observe(l.conn, m)
	return m, nil
}

// onListChanged handles notifications/tools/list_changed from the
// upstream: the list is fetched again (at most one fetch at a time, at
// most one per refreshEvery, however many notifications arrive). Nothing
// the upstream adds becomes callable: agents see only approved tools.
func (l *link) onListChanged(ctx context.Context, req *sdk.ToolListChangedRequest) {
	l.refresh()
}

// refresh lists the tools again in the background: at most one listing
// at a time and one per refreshEvery; a request during a listing makes one
// more after it.
func (l *link) refresh() {
	l.mu.Lock()
	l.dirty = true
	if l.refreshing {
		l.mu.Unlock()
		return
	}
	l.refreshing = true
	l.mu.Unlock()
	go func() {
		for {
			l.mu.Lock()
			if !l.dirty || l.session == nil {
				l.refreshing = false
				l.mu.Unlock()
				return
			}
			l.dirty = false
			cs := l.session
			l.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), l.conn.Timeout)
			if _, err := l.list(ctx, cs); err != nil {
				l.log().Warn("mcp: listing the upstream's tools again failed", "err", err)
			}
			cancel()
			time.Sleep(refreshEvery)
		}
	}()
}

// maxTools bounds how many tools Warden reads from one upstream.
const maxTools = 2000

func listAll(ctx context.Context, cs *sdk.ClientSession) ([]*sdk.Tool, error) {
	var out []*sdk.Tool
	params := &sdk.ListToolsParams{}
	for range 100 {
		res, err := cs.ListTools(ctx, params)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Tools...)
		if len(out) > maxTools {
			return nil, fmt.Errorf("the upstream offers more than %d tools", maxTools)
		}
		if res.NextCursor == "" {
			return out, nil
		}
		params = &sdk.ListToolsParams{Cursor: res.NextCursor}
	}
	return nil, errors.New("the upstream's tool list does not end")
}

func orEmpty(s any) any {
	if s == nil {
		return map[string]any{}
	}
	return s
}

// dial connects to the connector's upstream MCP server with the credential
// injected: into every HTTP request's headers (streamable HTTP), or into
// the environment of the stdio server Warden starts. The server's
// environment holds nothing of Warden's own but PATH.
func (g *Gateway) dial(ctx context.Context, c *connector.Connector, m *credential.Material, onChanged func(context.Context, *sdk.ToolListChangedRequest)) (*sdk.ClientSession, *exec.Cmd, error) {
	client := sdk.NewClient(&sdk.Implementation{Name: "warden", Version: "1"}, &sdk.ClientOptions{
		ToolListChangedHandler: onChanged,
		Capabilities:           &sdk.ClientCapabilities{},
	})
	spec := c.Doc.MCP
	if spec.URL != "" {
		var base http.RoundTripper = http.DefaultTransport
		if g.o.Proxy != nil {
			base = g.o.Proxy.Transport(c)
		}
		t := &sdk.StreamableClientTransport{
			Endpoint:   spec.URL,
			HTTPClient: &http.Client{Transport: &injecting{base: base, c: c, m: m}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
			MaxRetries: -1,
		}
		cs, err := client.Connect(ctx, t, nil)
		return cs, nil, err
	}
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for name, field := range spec.Env {
		if m == nil {
			return nil, nil, warden.Errorf(warden.CodeNoCredential, "connector %s passes credential field %q in %s, but no credential serves it", c.Name, field, name)
		}
		v, ok := m.Fields[field]
		if !ok {
			return nil, nil, warden.Errorf(warden.CodeNoCredential, "credential %s has no field %q for %s", m.Name, field, name)
		}
		cmd.Env = append(cmd.Env, name+"="+v.Reveal())
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = &stderrLog{log: g.log.With("connector", c.Name)}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", spec.Command[0], err)
	}
	reaped := make(chan struct{})
	go func() { _ = cmd.Wait(); close(reaped) }()
	t := &sdk.IOTransport{
		Reader: &jsonLines{r: bufio.NewReaderSize(stdout, 64<<10), log: g.log.With("connector", c.Name), closer: stdout},
		Writer: &procStdin{WriteCloser: stdin, cmd: cmd, reaped: reaped},
	}
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, nil, err
	}
	return cs, cmd, nil
}

// injecting adds the connector credential to requests to an upstream MCP
// server. The requests are built by Warden's own client, so nothing of the
// agent's request (its Warden token included) is in them.
type injecting struct {
	base http.RoundTripper
	c    *connector.Connector
	m    *credential.Material
}

// RoundTrip sends r with the credential. A POST (a request, response or
// notification Warden sends) runs on a context of its own, which the
// caller's context cancels at once while the response headers are awaited
// and only after drainGrace once the body is being read: the SDK hands a
// call its result as soon as the result's event is read and drains the
// rest of the response afterwards, while the call's context is already
// cancelled (Warden's tools/call returns and ends it). Cancelled in that
// window, net/http closes the connection, and the next call dials a new
// one: that was most tools/call on a fronted HTTP upstream.
func (t *injecting) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost {
		r = r.Clone(r.Context())
		proxy.Inject(r, t.c, t.m)
		return t.base.RoundTrip(r)
	}
	parent := r.Context()
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	x := &exchange{cancel: cancel}
	x.stop = context.AfterFunc(parent, x.callerDone)
	r = r.Clone(ctx)
	proxy.Inject(r, t.c, t.m)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		x.stop()
		cancel()
		return nil, err
	}
	x.reading.Store(true)
	resp.Body = &exchangeBody{ReadCloser: resp.Body, x: x}
	return resp, nil
}

// drainGrace bounds how long the rest of a response is read after the
// call that sent the request ended. A server that keeps the stream open
// past its response (the spec says it SHOULD close it) is cut then.
const drainGrace = 250 * time.Millisecond

// exchange is one POST to an upstream MCP server on a context of its own
// (see injecting.RoundTrip). Its context is cancelled when the caller's
// ends: at once before the response arrived, after drainGrace while the
// body is read, never once the body was read to its end or closed (the
// connection is back in the pool, or closed by net/http itself). A context
// never cancelled holds no timer and no registration: it is collected with
// the request.
type exchange struct {
	cancel  context.CancelFunc
	stop    func() bool
	reading atomic.Bool
	ended   atomic.Bool
}

func (x *exchange) callerDone() {
	if !x.reading.Load() {
		x.cancel()
		return
	}
	time.AfterFunc(drainGrace, func() {
		if !x.ended.Load() {
			x.cancel()
		}
	})
}

func (x *exchange) end() {
	x.ended.Store(true)
	x.stop()
}

type exchangeBody struct {
	io.ReadCloser
	x *exchange
}

func (b *exchangeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.x.end()
	}
	return n, err
}

func (b *exchangeBody) Close() error {
	b.x.end()
	return b.ReadCloser.Close()
}

// jsonLines passes on only lines that are JSON objects or arrays: a stdio
// server that writes logs or garbage to stdout does not break the session.
// Dropped lines are logged (clipped), overlong lines are dropped whole.
type jsonLines struct {
	r      *bufio.Reader
	log    *slog.Logger
	closer io.Closer
	buf    []byte
}

func (j *jsonLines) Read(p []byte) (int, error) {
	for len(j.buf) == 0 {
		line, err := j.readLine()
		if len(line) > 0 {
			t := bytes.TrimSpace(line)
			if len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t) {
				j.buf = append(t, '\n')
				break
			}
			if len(t) > 0 {
				j.log.Warn("mcp: stdio server wrote non-JSON to stdout; dropped", "line", clip(string(t)))
			}
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, j.buf)
	j.buf = j.buf[n:]
	return n, nil
}

func (j *jsonLines) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := j.r.ReadSlice('\n')
		if len(line)+len(frag) > maxLine {
			line = nil
			// Skip the rest of an overlong line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = j.r.ReadSlice('\n')
			}
			j.log.Warn("mcp: stdio server wrote a line longer than the limit; dropped", "limit", maxLine)
			return nil, err
		}
		line = append(line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

func (j *jsonLines) Close() error { return j.closer.Close() }

// procStdin closes the server's stdin on Close and stops the server if it
// does not exit soon after.
type procStdin struct {
	io.WriteCloser
	cmd    *exec.Cmd
	reaped chan struct{}
}

func (p *procStdin) Close() error {
	err := p.WriteCloser.Close()
	select {
	case <-p.reaped:
	case <-time.After(2 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.reaped
	}
	return err
}

// stderrLog logs what a stdio server writes to stderr, line by line and
// clipped.
type stderrLog struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			if len(s.buf) > 4096 {
				s.buf = s.buf[:0]
			}
			return len(p), nil
		}
		if line := bytes.TrimSpace(s.buf[:i]); len(line) > 0 {
			s.log.Info("mcp: stdio server stderr", "line", clip(string(line)))
		}
		s.buf = s.buf[i+1:]
	}
}
