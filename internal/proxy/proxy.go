// Package proxy is the HTTP front of the gateway: `ANY /proxy/{connector}/
// {path...}` forwards an agent's request to the connector's upstream after
// gate.Check allowed it, and `POST /v1/execute` calls an operation by name.
// Both translate HTTP into a gate.Call and back; neither reaches an upstream
// by any other route.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/approval"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/gate"
	"warden/internal/policy"
	"warden/internal/problem"
)

// Options are the proxy's dependencies.
type Options struct {
	Gate       *gate.Gate
	Approvals  *approval.Service
	Connectors *connector.Registry
	Logger     *slog.Logger
	// SQL, when set, serves POST /v1/execute on postgres connectors.
	SQL SQLExecutor
	// MaxParamsBytes bounds the JSON body read to build params (default
	// 1 MiB); larger JSON bodies are refused (413), other bodies stream.
	MaxParamsBytes int64
}

// Proxy serves governed calls.
type Proxy struct {
	o          Options
	transports sync.Map // connector name + version-ish key -> *http.Transport
	errorLog   *log.Logger
}

// copyBuffers are ReverseProxy's body-copy buffers. Without a pool it
// allocates 32 KiB for every response; on the gateway's hot path that was
// half of all bytes allocated, and the garbage collections it caused were
// the largest part of the tail latency.
var copyBuffers bufferPool

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != 32<<10 {
		return
	}
	buf = buf[:cap(buf)]
	b.p.Put(&buf)
}

// New returns a proxy.
func New(o Options) *Proxy {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxParamsBytes == 0 {
		o.MaxParamsBytes = 1 << 20
	}
	return &Proxy{o: o, errorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)}
}

// Prefix is where the proxy front is mounted.
const Prefix = "/proxy/"

func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error, d *policy.Decision) {
	extra := &problem.Extra{}
	if d != nil {
		extra.Policy, extra.Rule = d.Policy, d.Rule
		extra.RetryAfter = d.RetryAfterSeconds()
		if d.Effect != "" && warden.ErrorCode(err) == warden.Code(d.Code) {
			extra.Decision = string(d.Effect)
		}
		if d.Effect == policy.RequireApproval {
			extra.Decision = string(policy.RequireApproval)
		}
	}
	problem.Write(w, r, p.o.Logger, err, extra)
}

// transport returns the connector's transport: its own SSRF-checking dialer,
// no environment proxy, no redirects (the Transport never follows them).
func (p *Proxy) transport(c *connector.Connector) *http.Transport {
	key := c.Name + "|" + strconv.FormatBool(c.Doc.AllowPrivateNetwork) + "|" + c.Timeout.String()
	if t, ok := p.transports.Load(key); ok {
		return t.(*http.Transport)
	}
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer(c.Doc.AllowPrivateNetwork),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    128,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  c.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	actual, _ := p.transports.LoadOrStore(key, t)
	return actual.(*http.Transport)
}

// refusedHeaders are request headers that could make an upstream run a
// different operation than the one decided.
var refusedHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "Upgrade"}

// ServeHTTP handles /proxy/{connector}/{path...} for an authenticated
// identity.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request, who warden.Principal) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), Prefix)
	name, rawPath, _ := strings.Cut(rest, "/")
	rawPath = "/" + rawPath
	c, ok := p.o.Connectors.Get(name)
	if !ok {
		p.fail(w, r, warden.Errorf(warden.CodeUnknownOperation, "no connector named %q", clip(name)), nil)
		return
	}
	for _, h := range refusedHeaders {
		if r.Header.Get(h) != "" {
			p.fail(w, r, warden.Errorf(warden.CodeInvalid, "header %s is not allowed through the gateway", h), nil)
			return
		}
	}
	if r.URL.IsAbs() || (r.Host != "" && r.URL.Host != "" && r.URL.Host != r.Host) {
		p.fail(w, r, warden.Errorf(warden.CodeInvalid, "absolute-form request targets are not allowed"), nil)
		return
	}
	op, pathParams, err := c.Match(r.Method, rawPath)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	params := map[string]any{}
	query := r.URL.Query()
	for k, vs := range query {
		if len(vs) == 1 {
			params[k] = vs[0]
		} else {
			l := make([]any, len(vs))
			for i, v := range vs {
				l[i] = v
			}
			params[k] = l
		}
	}
	var body []byte
	var bytesIn int64
	if r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > c.MaxRequest {
			p.fail(w, r, warden.Errorf(warden.CodeTooLarge, "request body larger than %d bytes", c.MaxRequest), nil)
			return
		}
		if isJSON(r.Header.Get("Content-Type")) {
			limit := min(p.o.MaxParamsBytes, c.MaxRequest)
			body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
			if err != nil {
				p.fail(w, r, err, nil)
				return
			}
			if int64(len(body)) > limit {
				p.fail(w, r, warden.Errorf(warden.CodeTooLarge, "JSON body larger than %d bytes", limit), nil)
				return
			}
			bytesIn = int64(len(body))
			if len(bytes.TrimSpace(body)) > 0 {
				var obj any
				dec := json.NewDecoder(bytes.NewReader(body))
				dec.UseNumber()
				if err := dec.Decode(&obj); err != nil {
					p.fail(w, r, warden.Errorf(warden.CodeInvalid, "request body is not valid JSON"), nil)
					return
				}
				if m, ok := obj.(map[string]any); ok {
					for k, v := range m {
						params[k] = normalize(v)
					}
				} else {
					params["body"] = normalize(obj)
				}
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, c.MaxRequest)
			bytesIn = r.ContentLength
		}
	}
	resource := make(map[string]any, len(pathParams))
	for k, v := range pathParams {
		resource[k] = v
	}
	upPath, err := op.BuildPath(pathParams)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	call := &gate.Call{
		Principal: who, Connector: c, Op: op, Resource: resource, Params: params,
		Method: r.Method, Path: upPath, ClientIP: clientIP(r), UserAgent: r.UserAgent(),
		RequestID: problem.RequestID(r.Context()), ApprovalID: r.Header.Get("Warden-Approval"), BytesIn: bytesIn,
	}
	v, ok := p.check(w, r, call)
	if !ok {
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	var upstreamErr error
	rp := &httputil.ReverseProxy{
		Transport: p.transport(c),
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := *c.Base
			target.Path = c.Base.Path + upPath
			target.RawPath = ""
			pr.Out.URL = &target
			pr.Out.URL.RawQuery = query.Encode()
			pr.Out.Host = ""
			stripAgentHeaders(pr.Out.Header)
			if body != nil {
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.ContentLength = int64(len(body))
				pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			}
			inject(pr.Out, c, v.Credential)
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.ContentLength > c.MaxResp {
				return warden.Errorf(warden.CodeUpstreamUnavailable, "upstream response larger than %d bytes", c.MaxResp)
			}
			scrubResponse(resp.Header, v.Credential)
			resp.Header.Set("Warden-Decision", "allow")
			resp.Body = &limitedBody{ReadCloser: resp.Body, left: c.MaxResp}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			upstreamErr = err
			p.fail(w, r, warden.Wrap(err, warden.CodeUpstreamUnavailable, "the upstream did not answer: "+upstreamReason(err)), nil)
		},
		ErrorLog:   p.errorLog,
		BufferPool: &copyBuffers,
	}
	rp.ServeHTTP(cw, r)
	// Hand the agent its whole answer before recording the outcome. The
	// completed record is queued for the audit log's next group commit
	// (gate.Auditor.Enqueue): the agent's connection is not held for it.
	cw.Flush()
	// The completed record must not be lost to a client that hung up; the
	// timeout bounds only the wait for room in a full queue.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	p.o.Gate.Complete(ctx, v, cw.status(), cw.n, upstreamErr)
}

// maxWait bounds Prefer: wait.
const maxWait = 60 * time.Second

// check runs the gate. A call that needs a human is answered 202 with the
// approval to poll, unless the agent sent `Prefer: wait=N`: then the call is
// held until a human decides (or N seconds pass) and goes on if approved.
// It reports whether the call may be forwarded; otherwise it has answered.
func (p *Proxy) check(w http.ResponseWriter, r *http.Request, call *gate.Call) (*gate.Verdict, bool) {
	v := p.o.Gate.Check(r.Context(), call)
	if v.Pending != nil && p.o.Approvals != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
		if wait := preferWait(r.Header.Values("Prefer")); wait > 0 {
			a, err := p.o.Approvals.Wait(r.Context(), v.Pending.ID, wait)
			switch {
			case err != nil:
				p.fail(w, r, err, nil)
				return nil, false
			case a.Status == approval.StatusApproved:
				call.ApprovalID = a.ID
				v = p.o.Gate.Check(r.Context(), call)
			case a.Status == approval.StatusDenied:
				p.fail(w, r, warden.Errorf("denied", "a human denied this call (approval %s): %s", a.ID, a.Comment), &policy.Decision{Effect: policy.Deny, Code: "denied", Policy: a.Policy, Rule: a.Rule})
				return nil, false
			default:
				v.Pending = a
			}
		}
	}
	if v.Err == nil {
		return v, true
	}
	if v.Pending != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
		writePending(w, v)
		return nil, false
	}
	p.fail(w, r, v.Err, &v.Decision)
	return nil, false
}

// writePending answers 202 for a call waiting on a human's approval.
func writePending(w http.ResponseWriter, v *gate.Verdict) {
	a := v.Pending
	h := w.Header()
	h.Set("Warden-Decision", "require_approval")
	h.Set("Location", "/v1/approvals/"+a.ID)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(apitype.ApprovalPending{ApprovalID: a.ID, Status: a.Status, ExpiresAt: a.ExpiresAt, Reason: v.Decision.Reason, Policy: v.Decision.Policy, Rule: v.Decision.Rule})
}

// preferWait reads RFC 7240 `Prefer: wait=N`, capped at maxWait.
func preferWait(values []string) time.Duration {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil || n <= 0 {
				return 0
			}
			return min(time.Duration(n)*time.Second, maxWait)
		}
	}
	return 0
}

// stripAgentHeaders removes what must never reach an upstream: the agent's
// own credentials, cookies, Warden's headers, and forwarding headers the
// agent could forge. Hop-by-hop headers (and any named in Connection) are
// already removed by ReverseProxy before Rewrite runs, so the credential
// injected after this cannot be stripped by a Connection header.
func stripAgentHeaders(h http.Header) {
	for k := range h {
		lk := strings.ToLower(k)
		switch {
		case lk == "authorization", lk == "cookie", lk == "proxy-authorization", lk == "forwarded",
			strings.HasPrefix(lk, "x-forwarded-"), strings.HasPrefix(lk, "warden-"), lk == "x-real-ip":
			delete(h, k)
		}
	}
}

// inject adds the credential per its type.
func inject(out *http.Request, c *connector.Connector, m *credential.Material) {
	if m == nil {
		return
	}
	f := m.Fields
	switch m.Type {
	case credential.TypeHeader:
		name := f["name"].Reveal()
		if c.Doc.Auth.Type == "header" && c.Doc.Auth.Name != "" {
			name = c.Doc.Auth.Name // the connector says where the upstream expects it
		}
		out.Header.Set(name, f["value"].Reveal())
	case credential.TypeBasic:
		out.SetBasicAuth(f["username"].Reveal(), f["password"].Reveal())
	case credential.TypeQuery:
		name := f["name"].Reveal()
		if c.Doc.Auth.Type == "query" && c.Doc.Auth.Name != "" {
			name = c.Doc.Auth.Name
		}
		q := out.URL.Query()
		q.Set(name, f["value"].Reveal())
		out.URL.RawQuery = q.Encode()
	default: // bearer and token-producing types (oauth2) carry "token"
		if tok, ok := f["token"]; ok {
			out.Header.Set("Authorization", "Bearer "+tok.Reveal())
		}
	}
}

// Inject sets the credential m on out the way the connector's upstream
// expects it. The MCP front uses it for requests to upstream MCP servers.
func Inject(out *http.Request, c *connector.Connector, m *credential.Material) { inject(out, c, m) }

// Transport returns the connector's SSRF-checking transport (no
// environment proxy, no redirects), for fronts that speak to the upstream
// themselves (the MCP front's client to an upstream MCP server).
func (p *Proxy) Transport(c *connector.Connector) http.RoundTripper { return p.transport(c) }

// scrubResponse removes response headers that echo the injected secret, so
// an upstream that reflects request headers does not hand it to the agent.
func scrubResponse(h http.Header, m *credential.Material) {
	if m == nil {
		return
	}
	for k, vs := range h {
		for _, v := range vs {
			for _, s := range m.Fields {
				if sv := s.Reveal(); len(sv) >= 6 && strings.Contains(v, sv) {
					delete(h, k)
				}
			}
		}
	}
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// normalize turns json.Number into int64 or float64 so CEL compares numbers
// as arithmetic expects.
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
		return t
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

func asWarden(err error) *warden.Error {
	var we *warden.Error
	if errorsAs(err, &we) {
		return we
	}
	return nil
}

func upstreamReason(err error) string {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "timed out"
	}
	var uerr *url.Error
	if errorsAs(err, &uerr) && uerr.Timeout() {
		return "timed out"
	}
	if we := asWarden(err); we != nil {
		return we.Message
	}
	if strings.Contains(err.Error(), "refusing to dial") {
		return "address not allowed for this connector"
	}
	return "connection failed"
}

// countingWriter records the status and bytes written to the agent.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}

// limitedBody cuts a response that exceeds the connector's limit.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, warden.Errorf(warden.CodeUpstreamUnavailable, "upstream response exceeded the connector's size limit")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.ReadCloser.Read(p)
	l.left -= int64(n)
	return n, err
}
