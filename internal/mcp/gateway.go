// Package mcp is Warden's MCP front. Warden is an MCP server at /mcp
// (streamable HTTP, the official Go SDK): an agent authenticates with its
// Warden token on every request, sees as tools only the connector
// operations a policy could allow it or send for approval, and every
// tools/call goes through the same gate.Check as /v1/execute and the proxy.
// Upstream MCP servers are connectors of type mcp: their approved tools
// are the connector's operations, called through Warden's own client
// session with the credential injected, never by the agent directly.
package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden"
	"warden/internal/approval"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
	"warden/internal/identity"
	"warden/internal/policy"
	"warden/internal/proxy"
)

// Credentials resolves the credential that serves a connector for an
// identity ("" for the connector's default, used to list an upstream's
// tools for an admin).
type Credentials interface {
	Resolve(ctx context.Context, connector, identityID string) (*credential.Material, error)
}

// Options are the gateway's dependencies.
type Options struct {
	Gate        *gate.Gate
	Proxy       *proxy.Proxy
	Connectors  *connector.Registry
	Policies    *policy.Engine
	Identities  *identity.Service
	Approvals   *approval.Service
	Credentials Credentials
	Logger      *slog.Logger
	// SessionTimeout closes MCP sessions idle this long (default 30m).
	SessionTimeout time.Duration
}

// Reserved argument names and _meta keys. They are Warden's, removed from
// the arguments before validation, policy and forwarding: an approval id to
// retry a call a human approved, and how many seconds to wait for a
// pending approval's decision (at most MaxWait).
const (
	ArgApproval  = "_warden_approval"
	ArgWait      = "_warden_wait"
	MetaApproval = "warden/approval_id"
	MetaWait     = "warden/wait"
)

// MaxWait bounds how long a tool call waits for a human's decision.
const MaxWait = 60 * time.Second

// Gateway is the MCP front.
type Gateway struct {
	o       Options
	log     *slog.Logger
	server  *sdk.Server
	handler http.Handler
	schemas validators
	defs    sync.Map // *connector.Op -> *sdk.Tool (without name)
	done    chan struct{}
	once    sync.Once

	mu    sync.Mutex
	links map[linkKey]*link

	driftMu sync.Mutex
	drift   map[string]map[string]observed // connector -> upstream tool -> last seen
}

// New returns the gateway. Close stops the upstream sessions and the stdio
// servers it started.
func New(o Options) *Gateway {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 30 * time.Minute
	}
	g := &Gateway{o: o, log: o.Logger, done: make(chan struct{}), links: map[linkKey]*link{}, drift: map[string]map[string]observed{}}
	g.server = sdk.NewServer(&sdk.Implementation{Name: "warden", Title: "Warden governed tools", Version: "1"}, &sdk.ServerOptions{
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		Instructions: "Tools are governed by Warden: a call may be denied (the result says why) or wait for a human's approval (the result carries the approval id).",
		Logger:       o.Logger,
	})
	g.server.AddReceivingMiddleware(g.middleware)
	streamable := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return g.server }, &sdk.StreamableHTTPOptions{
		SessionTimeout: o.SessionTimeout,
		// Plain JSON answers: a tool call has one result, and Warden sends
		// no progress notifications during it.
		JSONResponse: true,
		Logger:       o.Logger,
		// The API already bounds request bodies (MaxBodyBytes); this is
		// the same bound again, for a handler mounted elsewhere.
		MaxRequestBodyBytes: 4 << 20,
	})
	// The API authenticated the request (authAgent) before ServeMCP; this
	// hands the result to the SDK as TokenInfo, whose UserID binds every
	// session to the identity that opened it (the SDK refuses a request
	// for a session with another identity's token: 403).
	g.handler = auth.RequireBearerToken(verifyFromContext, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(streamable)
	return g
}

// CloseSessions ends every agent session, so their open streams (GET
// /mcp) do not hold a graceful HTTP shutdown until its deadline. Register
// it with http.Server.RegisterOnShutdown.
func (g *Gateway) CloseSessions() {
	for ss := range g.server.Sessions() {
		_ = ss.Close()
	}
}

// Close ends every agent session and every upstream session, and stops the
// stdio servers.
func (g *Gateway) Close() {
	g.once.Do(func() { close(g.done) })
	g.CloseSessions()
	g.mu.Lock()
	links := g.links
	g.links = map[linkKey]*link{}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() { defer wg.Done(); l.close() }()
	}
	wg.Wait()
}

// caller is who sent one HTTP request to /mcp, authenticated by the API.
type caller struct {
	who       warden.Principal
	ip        string
	userAgent string
}

type callerKey struct{}

const tokenInfoCaller = "warden_caller"

func verifyFromContext(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
	c, ok := ctx.Value(callerKey{}).(*caller)
	if !ok || c.who.Kind != warden.PrincipalIdentity || c.who.ID == "" {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{UserID: c.who.ID, Extra: map[string]any{tokenInfoCaller: c}}, nil
}

// ServeMCP serves one HTTP request of the MCP endpoint for an identity the
// API authenticated with this very request's bearer token: a session id
// alone never authenticates, and each tools/call is decided for the
// identity of the request that carries it.
func (g *Gateway) ServeMCP(w http.ResponseWriter, r *http.Request, who warden.Principal) {
	// Streams (GET) and calls that wait for an approval or a slow upstream
	// outlive the server's write timeout; the connector timeout and
	// MaxWait bound them instead.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	c := &caller{who: who, ip: ip, userAgent: r.UserAgent()}
	g.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
}

func callerOf(req sdk.Request) (*caller, error) {
	if ex := req.GetExtra(); ex != nil && ex.TokenInfo != nil {
		if c, ok := ex.TokenInfo.Extra[tokenInfoCaller].(*caller); ok {
			return c, nil
		}
	}
	return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "unauthenticated"}
}

// middleware serves tools/list and tools/call itself, per identity and per
// request; every other method goes to the SDK's server (initialize, ping,
// and method-not-found for what Warden does not offer).
func (g *Gateway) middleware(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		switch method {
		case "tools/list":
			r, ok := req.(*sdk.ListToolsRequest)
			if !ok {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "tools/list is a request"}
			}
			return g.listTools(ctx, r)
		case "tools/call":
			r, ok := req.(*sdk.CallToolRequest)
			if !ok {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "tools/call is a request"}
			}
			return g.callTool(ctx, r)
		}
		return next(ctx, method, req)
	}
}

// activeIdentity returns the policy view of the caller, or nil when the
// identity is not active (it is offered no tools; its calls are denied by
// the gate anyway).
func (g *Gateway) activeIdentity(ctx context.Context, who warden.Principal) (*policy.Identity, error) {
	id, err := g.o.Identities.Resolve(ctx, who.ID)
	if err != nil {
		if warden.IsCode(err, warden.CodeNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if id.Status != identity.StatusActive {
		return nil, nil
	}
	return &policy.Identity{ID: id.ID, Name: id.Name, Type: id.Type, Owner: id.Owner, Environment: id.Environment, Labels: id.Labels}, nil
}

// listTools offers the operations of every connector in force that a
// policy could allow the identity or send for approval (policy.Possible).
// Tools that policy always denies are not shown; calling them anyway is
// decided (and audited) like any call.
func (g *Gateway) listTools(ctx context.Context, req *sdk.ListToolsRequest) (*sdk.ListToolsResult, error) {
	c, err := callerOf(req)
	if err != nil {
		return nil, err
	}
	if req.Params != nil && req.Params.Cursor != "" {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid cursor: Warden lists every tool in one page"}
	}
	pid, err := g.activeIdentity(ctx, c.who)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "Warden cannot list tools right now (identity store unavailable)"}
	}
	out := &sdk.ListToolsResult{Tools: []*sdk.Tool{}}
	if pid == nil {
		return out, nil
	}
	for _, conn := range g.o.Connectors.All() {
		for _, op := range conn.Operations() {
			name, ok := ToolName(conn.Name, op.ID)
			if !ok || !g.o.Policies.Possible(*pid, op.Action) {
				continue
			}
			t := *g.definition(conn, op)
			t.Name = name
			out.Tools = append(out.Tools, &t)
		}
	}
	return out, nil
}

// definition returns the tool definition of an operation (cached per
// compiled operation). An MCP connector's tool shows the approved
// description and schema, never what the upstream says now.
func (g *Gateway) definition(c *connector.Connector, op *connector.Op) *sdk.Tool {
	if t, ok := g.defs.Load(op); ok {
		return t.(*sdk.Tool)
	}
	t := &sdk.Tool{Title: op.Action, Description: op.Description}
	if c.IsMCP() {
		if mt, ok := c.MCPTool(op.ID); ok {
			t.InputSchema = objectSchema(mt.InputSchema)
		}
	} else {
		t.InputSchema = httpInputSchema(op)
		if t.Description == "" {
			t.Description = op.Method + " " + op.Operation.Path
		}
	}
	if t.InputSchema == nil {
		t.InputSchema = map[string]any{"type": "object"}
	}
	t.Description = strings.TrimSpace(t.Description + "\n\n(" + op.Action + ", governed by Warden)")
	ann := &sdk.ToolAnnotations{ReadOnlyHint: op.Class == "read"}
	if op.Class == "delete" || op.Class == "admin" {
		yes := true
		ann.DestructiveHint = &yes
	}
	t.Annotations = ann
	actual, _ := g.defs.LoadOrStore(op, t)
	return actual.(*sdk.Tool)
}

func objectSchema(s map[string]any) map[string]any {
	if s == nil {
		return map[string]any{"type": "object"}
	}
	if _, ok := s["type"]; !ok {
		c := make(map[string]any, len(s)+1)
		for k, v := range s {
			c[k] = v
		}
		c["type"] = "object"
		return c
	}
	return s
}

// callOptions are Warden's own options of one tool call.
type callOptions struct {
	approvalID string
	wait       time.Duration
}

// takeOptions removes Warden's reserved arguments and reads the _meta keys.
func takeOptions(args map[string]any, meta map[string]any) (callOptions, error) {
	var o callOptions
	read := func(src map[string]any, ak, wk string) error {
		if v, ok := src[ak]; ok {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("%s must be a string (an approval id)", ak)
			}
			o.approvalID = s
		}
		if v, ok := src[wk]; ok {
			var secs float64
			switch n := v.(type) {
			case float64:
				secs = n
			case int64:
				secs = float64(n)
			case json.Number:
				secs, _ = n.Float64()
			default:
				return fmt.Errorf("%s must be a number of seconds", wk)
			}
			if secs < 0 {
				return fmt.Errorf("%s must not be negative", wk)
			}
			o.wait = min(time.Duration(secs*float64(time.Second)), MaxWait)
		}
		return nil
	}
	if err := read(meta, MetaApproval, MetaWait); err != nil {
		return o, err
	}
	if err := read(args, ArgApproval, ArgWait); err != nil {
		return o, err
	}
	delete(args, ArgApproval)
	delete(args, ArgWait)
	return o, nil
}

// decodeArgs reads the arguments as a JSON object, numbers as int64 when
// integral (CEL compares them as arithmetic expects).
func decodeArgs(raw json.RawMessage) (map[string]any, error) {
	args := map[string]any{}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return args, nil
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	if err := dec.Decode(&args); err != nil {
		return nil, errors.New("arguments must be a JSON object")
	}
	for k, v := range args {
		args[k] = normalize(v)
	}
	return args, nil
}

func normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
	}
	return v
}

// callTool decides and performs one tool call. Unknown tools are JSON-RPC
// errors (invalid params); everything Warden refuses about a known tool is
// a tool error (isError) whose text says what was refused and why, so the
// model can adapt.
func (g *Gateway) callTool(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	cl, err := callerOf(req)
	if err != nil {
		return nil, err
	}
	if req.Params == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "missing params"}
	}
	name := req.Params.Name
	connName, opID, ok := ParseToolName(name)
	var (
		c  *connector.Connector
		op *connector.Op
	)
	if ok {
		if c, ok = g.o.Connectors.Get(connName); ok {
			op, ok = c.Operation(opID)
		}
	}
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", clip(name))}
	}
	args, err := decodeArgs(req.Params.Arguments)
	if err != nil {
		return toolError("Warden refused the call to %s: %v.", name, err), nil
	}
	opts, err := takeOptions(args, req.Params.Meta)
	if err != nil {
		return toolError("Warden refused the call to %s: %v.", name, err), nil
	}
	if err := g.schemas.validate(c, op, args); err != nil {
		return toolError("Warden refused the call to %s: %v. Nothing was sent.", name, err), nil
	}
	base := gate.Call{Principal: cl.who, ClientIP: cl.ip, UserAgent: cl.userAgent, RequestID: warden.NewID(warden.PrefixRequest), ApprovalID: opts.approvalID}
	if c.IsMCP() {
		return g.callUpstream(ctx, base, c, op, args, opts, name), nil
	}
	resource, params := splitArgs(op, args)
	pr, err := proxy.Prepare(c, op, resource, params)
	if err != nil {
		return toolError("Warden refused the call to %s: %s. Nothing was sent.", name, describe(err)), nil
	}
	call := pr.Call
	call.Principal, call.ClientIP, call.UserAgent, call.RequestID, call.ApprovalID = base.Principal, base.ClientIP, base.UserAgent, base.RequestID, base.ApprovalID
	v, res := g.check(ctx, call, opts, name)
	if res != nil {
		return res, nil
	}
	out, status, err := g.o.Proxy.Send(ctx, pr, v)
	if err != nil {
		g.complete(ctx, v, status, 0, err)
		return toolError("The call to %s was allowed but failed: %s.", name, describe(err)), nil
	}
	body, _ := json.Marshal(out)
	result := &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(body)}}, StructuredContent: json.RawMessage(body), IsError: out.Status >= 400}
	g.complete(ctx, v, out.Status, int64(len(body)), nil)
	return result, nil
}

// check runs gate.Check and, for a pending approval the caller asked to
// wait for, waits for the human's decision. It returns the verdict of an
// allowed call, or the result to answer with.
func (g *Gateway) check(ctx context.Context, call *gate.Call, opts callOptions, name string) (*gate.Verdict, *sdk.CallToolResult) {
	v := g.o.Gate.Check(ctx, call)
	if v.Pending != nil && opts.wait > 0 && g.o.Approvals != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
		a, err := g.o.Approvals.Wait(ctx, v.Pending.ID, opts.wait)
		switch {
		case err != nil:
			return nil, toolError("Warden could not wait for approval %s of %s: %s.", v.Pending.ID, name, describe(err))
		case a.Status == approval.StatusApproved:
			call.ApprovalID = a.ID
			v = g.o.Gate.Check(ctx, call)
		case a.Status == approval.StatusDenied:
			msg := fmt.Sprintf("A human denied the call to %s (approval %s)", name, a.ID)
			if a.Comment != "" {
				msg += ": " + a.Comment
			}
			return nil, toolError("%s. Nothing was sent.", msg)
		default:
			v.Pending = a
		}
	}
	if v.Err == nil {
		return v, nil
	}
	if v.Pending != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
		return nil, pendingResult(v, name)
	}
	return nil, denial(v, name, call.Op.Action)
}

// PendingApproval is the structured content of a call waiting for a human.
type PendingApproval struct {
	Decision   string    `json:"decision"` // require_approval
	ApprovalID string    `json:"approval_id"`
	Status     string    `json:"status"`
	ExpiresAt  time.Time `json:"expires_at"`
	Reason     string    `json:"reason"`
	Policy     string    `json:"policy,omitempty"`
	Rule       string    `json:"rule,omitempty"`
}

func pendingResult(v *gate.Verdict, name string) *sdk.CallToolResult {
	a := v.Pending
	p := PendingApproval{Decision: string(policy.RequireApproval), ApprovalID: a.ID, Status: a.Status, ExpiresAt: a.ExpiresAt, Reason: v.Decision.Reason, Policy: v.Decision.Policy, Rule: v.Decision.Rule}
	text := fmt.Sprintf("The call to %s needs a human's approval; nothing was sent yet. Approval %s is %s (expires %s). Reason: %s. "+
		"When it is approved, call %s again with the same arguments plus %q: %q; or add %q: <seconds> to wait for the decision.",
		name, a.ID, a.Status, a.ExpiresAt.UTC().Format(time.RFC3339), v.Decision.Reason, name, ArgApproval, a.ID, ArgWait)
	b, _ := json.Marshal(p)
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}, StructuredContent: json.RawMessage(b)}
}

// Denial is the structured content of a refused call.
type Denial struct {
	Decision string `json:"decision"` // deny | error
	Code     string `json:"code"`
	Reason   string `json:"reason"`
	Policy   string `json:"policy,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Action   string `json:"action"`
}

func denial(v *gate.Verdict, name, action string) *sdk.CallToolResult {
	code := string(warden.ErrorCode(v.Err))
	d := Denial{Decision: "deny", Code: code, Reason: describe(v.Err), Policy: v.Decision.Policy, Rule: v.Decision.Rule, Action: action}
	if c := v.Decision.Code; c != "" && string(c) == code {
		d.Reason = v.Decision.Reason
	}
	text := fmt.Sprintf("Warden denied the call to %s: %s (code %s", name, d.Reason, code)
	if d.Policy != "" {
		text += fmt.Sprintf(", policy %s, rule %s", d.Policy, d.Rule)
	}
	text += "). Nothing was sent."
	b, _ := json.Marshal(d)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}, StructuredContent: json.RawMessage(b)}
}

func toolError(format string, args ...any) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// describe renders an error for the model: a *warden.Error's message
// (safe to show), never its wrapped cause.
func describe(err error) string {
	var we *warden.Error
	if errors.As(err, &we) {
		msg := we.Message
		if we.Field != "" {
			msg = we.Field + ": " + msg
		}
		return msg
	}
	return "internal error"
}
