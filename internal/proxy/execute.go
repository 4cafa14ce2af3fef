package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"warden"
	"warden/apitype"
	"warden/internal/approval"
	"warden/internal/connector"
	"warden/internal/gate"
	"warden/internal/policy"
	"warden/internal/problem"
)

// maxExecuteResponse bounds the upstream body returned inside the execute
// answer (it is buffered to be embedded in JSON).
const maxExecuteResponse = 10 << 20

// Execute handles POST /v1/execute: the operation is named, not routed, and
// the upstream request is built from its definition: resource fills the
// path template, params become the query (GET, HEAD, DELETE) or the JSON
// body (other methods).
func (p *Proxy) Execute(w http.ResponseWriter, r *http.Request, who warden.Principal, in apitype.ExecuteRequest) {
	c, ok := p.o.Connectors.Get(in.Connector)
	if !ok {
		p.fail(w, r, warden.Errorf(warden.CodeUnknownOperation, "no connector named %q", clip(in.Connector)), nil)
		return
	}
	if c.IsPostgres() && p.o.SQL != nil {
		p.executeSQL(w, r, who, c, in)
		return
	}
	op, ok := c.Operation(in.Operation)
	if !ok {
		p.fail(w, r, warden.Errorf(warden.CodeUnknownOperation, "connector %s has no operation %q", c.Name, clip(in.Operation)), nil)
		return
	}
	pr, err := Prepare(c, op, in.Resource, in.Params)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	call := pr.Call
	call.Principal, call.ClientIP, call.UserAgent = who, clientIP(r), r.UserAgent()
	call.RequestID, call.ApprovalID = problem.RequestID(r.Context()), r.Header.Get("Warden-Approval")
	v, ok := p.check(w, r, call)
	if !ok {
		return
	}
	res, status, err := p.Send(r.Context(), pr, v)
	if err != nil {
		p.o.Gate.Complete(context.WithoutCancel(r.Context()), v, status, 0, err)
		p.fail(w, r, err, nil)
		return
	}
	w.Header().Set("Warden-Decision", "allow")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	n, _ := writeJSONCount(w, res)
	ctx2, cancel2 := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel2()
	p.o.Gate.Complete(ctx2, v, res.Status, n, nil)
}

// SQLExecutor runs POST /v1/execute on postgres connectors
// (internal/pgwire): it decides every statement through the gate and runs
// the SQL. A refusal comes back as a verdict whose Err says why; other
// errors are *warden.Error. The result is JSON-encodable.
type SQLExecutor interface {
	ExecuteSQL(ctx context.Context, base gate.Call, c *connector.Connector, operation string, params map[string]any) (any, *gate.Verdict, error)
}

// executeSQL is the execute front of postgres connectors.
func (p *Proxy) executeSQL(w http.ResponseWriter, r *http.Request, who warden.Principal, c *connector.Connector, in apitype.ExecuteRequest) {
	if len(in.Resource) > 0 {
		p.fail(w, r, warden.FieldError("resource", "is not used by database connectors: the tables come from the SQL"), nil)
		return
	}
	params := in.Params
	for k, v := range params {
		params[k] = normalize(v)
	}
	base := gate.Call{Principal: who, ClientIP: clientIP(r), UserAgent: r.UserAgent(), RequestID: problem.RequestID(r.Context()), ApprovalID: r.Header.Get("Warden-Approval")}
	res, v, err := p.o.SQL.ExecuteSQL(r.Context(), base, c, in.Operation, params)
	// Prefer: wait=N: wait for the human, then run the identical call once
	// with the approval (as the HTTP operations do).
	if v != nil && v.Pending != nil && p.o.Approvals != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
		if wait := preferWait(r.Header.Values("Prefer")); wait > 0 {
			a, werr := p.o.Approvals.Wait(r.Context(), v.Pending.ID, wait)
			switch {
			case werr != nil:
				p.fail(w, r, werr, nil)
				return
			case a.Status == approval.StatusApproved:
				base.ApprovalID = a.ID
				res, v, err = p.o.SQL.ExecuteSQL(r.Context(), base, c, in.Operation, params)
			case a.Status == approval.StatusDenied:
				p.fail(w, r, warden.Errorf("denied", "a human denied this call (approval %s): %s", a.ID, a.Comment), &policy.Decision{Effect: policy.Deny, Code: "denied", Policy: a.Policy, Rule: a.Rule})
				return
			default:
				v.Pending = a
			}
		}
	}
	if v != nil && v.Err != nil {
		if v.Pending != nil && warden.IsCode(v.Err, warden.CodeApprovalRequired) {
			writePending(w, v)
			return
		}
		p.fail(w, r, v.Err, &v.Decision)
		return
	}
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	w.Header().Set("Warden-Decision", "allow")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = writeJSONCount(w, res)
}

// Prepared is an operation call checked against the operation's definition:
// the gate.Call to decide (the front fills in who and where from) and the
// upstream request built from the operation's template. POST /v1/execute
// and the MCP front both prepare calls here, so a tool call sends exactly
// the request the execute front would.
type Prepared struct {
	Call  *gate.Call
	query url.Values
	body  []byte
}

// Prepare validates an execute-style call: resource values fill the path
// template (each must be a path parameter, a string or number), params
// become the query (GET, HEAD, DELETE) or the JSON body (other methods).
// params is normalised in place. Errors are *warden.Error (invalid,
// too_large, unknown_operation).
func Prepare(c *connector.Connector, op *connector.Op, inResource, params map[string]any) (*Prepared, error) {
	if c.Doc.Type != "" && c.Doc.Type != "http" {
		return nil, warden.Errorf(warden.CodeUnknownOperation, "connector %s is of type %s; its operations are not HTTP requests", c.Name, c.Doc.Type)
	}
	pathParams := map[string]string{}
	resource := map[string]any{}
	for k, v := range inResource {
		s, ok := scalarString(v)
		if !ok {
			return nil, warden.FieldError("resource."+k, "must be a string or number")
		}
		pathParams[k], resource[k] = s, s
	}
	for k := range pathParams {
		if !contains(op.PathParams(), k) {
			return nil, warden.FieldError("resource."+k, "is not a path parameter of %s (it has: %s)", op.Action, strings.Join(op.PathParams(), ", "))
		}
	}
	upPath, err := op.BuildPath(pathParams)
	if err != nil {
		return nil, err
	}
	if params == nil {
		params = map[string]any{}
	}
	for k, v := range params {
		params[k] = normalize(v)
	}
	var body []byte
	query := url.Values{}
	switch op.Method {
	case http.MethodGet, http.MethodHead, http.MethodDelete:
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch t := params[k].(type) {
			case []any:
				for _, x := range t {
					s, ok := scalarString(x)
					if !ok {
						return nil, warden.FieldError("params."+k, "query parameters must be strings, numbers or lists of them")
					}
					query.Add(k, s)
				}
			default:
				s, ok := scalarString(t)
				if !ok {
					return nil, warden.FieldError("params."+k, "query parameters must be strings, numbers or lists of them")
				}
				query.Set(k, s)
			}
		}
	default:
		if body, err = json.Marshal(params); err != nil {
			return nil, warden.FieldError("params", "cannot be encoded as JSON")
		}
		if int64(len(body)) > c.MaxRequest {
			return nil, warden.Errorf(warden.CodeTooLarge, "params larger than %d bytes", c.MaxRequest)
		}
	}
	call := &gate.Call{Connector: c, Op: op, Resource: resource, Params: params, Method: op.Method, Path: upPath, BytesIn: int64(len(body))}
	return &Prepared{Call: call, query: query, body: body}, nil
}

// Send performs a prepared call that the gate allowed (v.Err is nil) with
// v's credential injected, and returns the upstream's answer, its body
// bounded and embedded as JSON. It does not complete the verdict: the
// caller calls gate.Complete with the status (0 when the upstream did not
// answer) and the error, which is a *warden.Error (upstream_unavailable,
// internal).
func (p *Proxy) Send(ctx context.Context, pr *Prepared, v *gate.Verdict) (*apitype.ExecuteResponse, int, error) {
	if v == nil || v.Err != nil {
		return nil, 0, warden.Errorf(warden.CodeInternal, "refusing to send a call the gate did not allow")
	}
	c, op := pr.Call.Connector, pr.Call.Op
	target := *c.Base
	target.Path = c.Base.Path + pr.Call.Path
	target.RawQuery = pr.query.Encode()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rd io.Reader
	if pr.body != nil {
		rd = bytes.NewReader(pr.body)
	}
	out, err := http.NewRequestWithContext(ctx, op.Method, target.String(), rd)
	if err != nil {
		return nil, 0, warden.Wrap(err, warden.CodeInternal, "building upstream request")
	}
	if pr.body != nil {
		out.Header.Set("Content-Type", "application/json")
	}
	out.Header.Set("Accept", "application/json")
	out.Header.Set("User-Agent", "warden")
	inject(out, c, v.Credential)
	hc := &http.Client{Transport: p.transport(c), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(out)
	if err != nil {
		return nil, 0, warden.Wrap(err, warden.CodeUpstreamUnavailable, "the upstream did not answer: "+upstreamReason(err))
	}
	defer resp.Body.Close()
	limit := min(c.MaxResp, maxExecuteResponse)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(raw)) > limit {
		err = fmt.Errorf("upstream response larger than %d bytes", limit)
	}
	if err != nil {
		return nil, resp.StatusCode, warden.Wrap(err, warden.CodeUpstreamUnavailable, "reading the upstream response failed: "+err.Error())
	}
	scrubResponse(resp.Header, v.Credential)
	res := &apitype.ExecuteResponse{Status: resp.StatusCode, Headers: map[string]string{}}
	for _, h := range []string{"Content-Type", "Location", "Etag", "Last-Modified", "Retry-After", "Link"} {
		if val := resp.Header.Get(h); val != "" {
			res.Headers[h] = val
		}
	}
	switch {
	case len(raw) == 0:
	case isJSON(resp.Header.Get("Content-Type")) && json.Valid(raw):
		res.Body = json.RawMessage(raw)
	case utf8.Valid(raw):
		s, _ := json.Marshal(string(raw))
		res.Body = json.RawMessage(s)
	default:
		res.BodyBase64 = raw
	}
	return res, resp.StatusCode, nil
}

func writeJSONCount(w io.Writer, v any) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(append(b, '\n'))
	return int64(n), err
}

func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case float64:
		return fmt.Sprint(t), true
	case int64:
		return fmt.Sprint(t), true
	case int:
		return fmt.Sprint(t), true
	case bool:
		return fmt.Sprint(t), true
	}
	return "", false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
