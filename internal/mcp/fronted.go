package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
)

// callUpstream decides and performs a call to an approved tool of an
// upstream MCP server. Order: the tool must not be known to have changed
// upstream; gate.Check decides (policy per tool and per argument,
// approvals, limits, credential, durable audit); the live definition is
// checked against the pin once more on the session that will carry the
// call; only then is the call sent, with the upstream's tool name and the
// agent's arguments, on Warden's own session.
func (g *Gateway) callUpstream(ctx context.Context, base gate.Call, c *connector.Connector, op *connector.Op, args map[string]any, opts callOptions, name string) *sdk.CallToolResult {
	mt, ok := c.MCPTool(op.ID)
	if !ok {
		return toolError("Warden refused the call to %s: the tool has no approved definition.", name)
	}
	if g.changed(c.Name, mt) {
		g.log.Warn("mcp: call to a tool whose upstream definition changed refused", "connector", c.Name, "tool", mt.Name, "identity", base.Principal.ID)
		return blocked(name)
	}
	raw, _ := json.Marshal(args)
	call := base
	call.Connector, call.Op, call.Params, call.Method, call.Path, call.BytesIn = c, op, args, "tools/call", mt.Name, int64(len(raw))
	v, res := g.check(ctx, &call, opts, name)
	if res != nil {
		return res
	}
	fail := func(err error, msg string) *sdk.CallToolResult {
		g.complete(ctx, v, 0, 0, err)
		return toolError("The call to %s was allowed but %s. Nothing more was sent.", name, msg)
	}
	l := g.link(c, v.Credential)
	cs, err := l.ready(ctx)
	if err != nil {
		return fail(err, "the upstream MCP server is unavailable: "+describe(err))
	}
	cur, ok, err := l.current(ctx, cs, mt.Name)
	switch {
	case err != nil:
		return fail(err, "listing the upstream's tools failed")
	case !ok:
		return fail(errors.New("tool no longer offered upstream"), "the upstream no longer offers this tool")
	case cur.pin != mt.SHA256:
		g.log.Warn("mcp: upstream tool definition changed; blocked until accepted", "connector", c.Name, "tool", mt.Name)
		g.complete(ctx, v, 0, 0, errors.New("tool definition changed upstream; blocked"))
		return blocked(name)
	}
	cctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// The arguments as encoded once for the audit's byte count.
	out, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: mt.Name, Arguments: json.RawMessage(raw)})
	if err != nil {
		// The transport's response-header timeout is the connector's
		// timeout too, and may fire first.
		var ne net.Error
		if ctx.Err() == nil && (cctx.Err() != nil || errors.As(err, &ne) && ne.Timeout()) {
			l.drop(cs) // hung: cut it off; the next call gets a fresh session
			return fail(err, fmt.Sprintf("the upstream MCP server did not answer within %s", c.Timeout))
		}
		return fail(err, "the upstream MCP server failed: "+clip(err.Error()))
	}
	result := &sdk.CallToolResult{Content: out.Content, StructuredContent: out.StructuredContent, IsError: out.IsError}
	if result.Content == nil {
		result.Content = []sdk.Content{}
	}
	b, err := json.Marshal(result)
	if err != nil {
		return fail(err, "its result cannot be encoded")
	}
	if int64(len(b)) > c.MaxResp {
		return fail(fmt.Errorf("result larger than %d bytes", c.MaxResp), fmt.Sprintf("its result is larger than %d bytes", c.MaxResp))
	}
	if scrubbed, ok := scrub(b, v.Credential); ok {
		// The upstream echoed the injected credential: never hand it to
		// the agent.
		var r sdk.CallToolResult
		if json.Unmarshal(scrubbed, &r) == nil {
			result = &r
		} else {
			return fail(errors.New("result echoed the credential"), "its result could not be cleaned of the credential")
		}
	}
	status := 200
	if result.IsError {
		status = 502
	}
	g.complete(ctx, v, status, int64(len(b)), nil)
	return result
}

// complete records the outcome of a forwarded call. Like the proxy, it
// does not hold the result back: the "decided" record was durable before
// anything was sent, and the completed one is queued for the audit log's
// next group commit (gate.Auditor.Enqueue), which Close of the log flushes.
func (g *Gateway) complete(ctx context.Context, v *gate.Verdict, status int, bytesOut int64, err error) {
	// The timeout bounds only a wait for room in a full audit queue.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	g.o.Gate.Complete(cctx, v, status, bytesOut, err)
}

func blocked(name string) *sdk.CallToolResult {
	return toolError("Warden blocked the call to %s: the upstream server changed this tool's definition since an admin approved it. "+
		"It stays blocked until an admin reviews and accepts the change (warden connector accept-changes). Nothing was sent.", name)
}

// scrub replaces every credential value (6 characters or more) found in
// the JSON b with "[redacted]".
func scrub(b []byte, m *credential.Material) ([]byte, bool) {
	if m == nil {
		return b, false
	}
	found := false
	for _, s := range m.Fields {
		v := s.Reveal()
		if len(v) < 6 {
			continue
		}
		enc, _ := json.Marshal(v)
		needle := enc[1 : len(enc)-1] // as it appears inside a JSON string
		if bytes.Contains(b, needle) {
			b = bytes.ReplaceAll(b, needle, []byte("[redacted]"))
			found = true
		}
	}
	return b, found
}

// link returns the session holder for a connector and credential. Links of
// a connector that was replaced (a new document version) are closed here,
// their approvals and settings being no longer in force, and so are links
// of an older version of the same credential (a rotated secret: its stdio
// server still holds the old one).
func (g *Gateway) link(c *connector.Connector, m *credential.Material) *link {
	key := linkKey{conn: c}
	if m != nil {
		key.credential, key.version = m.CredentialID, m.Version
	}
	g.mu.Lock()
	if l, ok := g.links[key]; ok {
		g.mu.Unlock()
		return l
	}
	l := &link{g: g, conn: c, cred: m}
	g.links[key] = l
	var stale []*link
	for k, o := range g.links {
		rotated := m != nil && o.cred != nil && o.conn == c && o.cred.CredentialID == m.CredentialID && o.cred.Version != m.Version
		if cur, ok := g.o.Connectors.Get(o.conn.Name); !ok || cur != o.conn || rotated {
			stale = append(stale, o)
			delete(g.links, k)
		}
	}
	g.mu.Unlock()
	for _, o := range stale {
		go o.close()
	}
	return l
}

// linkKey names a link: a compiled connector (a new document version is a
// new *Connector) and a credential version.
type linkKey struct {
	conn       *connector.Connector
	credential string
	version    int64
}

// observe records the upstream's current tool definitions and logs each
// approved tool whose definition no longer matches its pin (once per
// change): the call path blocks it until an admin accepts the change.
func (g *Gateway) observe(c *connector.Connector, tools map[string]observed) {
	g.driftMu.Lock()
	prev := g.drift[c.Name]
	g.drift[c.Name] = tools
	g.driftMu.Unlock()
	if c.Doc.MCP == nil {
		return
	}
	for _, t := range c.Doc.MCP.Tools {
		o, ok := tools[t.Name]
		if !ok || o.pin == t.SHA256 {
			continue
		}
		if p, seen := prev[t.Name]; seen && p.pin == o.pin {
			continue
		}
		g.log.Warn("mcp: upstream tool definition changed since approval; calls are blocked until accepted",
			"connector", c.Name, "tool", t.Name, "approved_sha256", t.SHA256, "upstream_sha256", o.pin,
			"warnings", PoisonWarnings(o.tool.Description, o.tool.InputSchema))
	}
}

// changed reports whether the upstream is known to define tool differently
// from its approved pin.
func (g *Gateway) changed(connectorName string, t *connector.MCPTool) bool {
	g.driftMu.Lock()
	defer g.driftMu.Unlock()
	o, ok := g.drift[connectorName][t.Name]
	return ok && o.pin != t.SHA256
}
