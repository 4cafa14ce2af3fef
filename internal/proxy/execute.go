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
	"warden/internal/gate"
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
	op, ok := c.Operation(in.Operation)
	if !ok {
		p.fail(w, r, warden.Errorf(warden.CodeUnknownOperation, "connector %s has no operation %q", c.Name, clip(in.Operation)), nil)
		return
	}
	pathParams := map[string]string{}
	resource := map[string]any{}
	for k, v := range in.Resource {
		s, ok := scalarString(v)
		if !ok {
			p.fail(w, r, warden.FieldError("resource."+k, "must be a string or number"), nil)
			return
		}
		pathParams[k], resource[k] = s, s
	}
	for k := range pathParams {
		if !contains(op.PathParams(), k) {
			p.fail(w, r, warden.FieldError("resource."+k, "is not a path parameter of %s (it has: %s)", op.Action, strings.Join(op.PathParams(), ", ")), nil)
			return
		}
	}
	upPath, err := op.BuildPath(pathParams)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	params := in.Params
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
						p.fail(w, r, warden.FieldError("params."+k, "query parameters must be strings, numbers or lists of them"), nil)
						return
					}
					query.Add(k, s)
				}
			default:
				s, ok := scalarString(t)
				if !ok {
					p.fail(w, r, warden.FieldError("params."+k, "query parameters must be strings, numbers or lists of them"), nil)
					return
				}
				query.Set(k, s)
			}
		}
	default:
		if body, err = json.Marshal(params); err != nil {
			p.fail(w, r, warden.FieldError("params", "cannot be encoded as JSON"), nil)
			return
		}
		if int64(len(body)) > c.MaxRequest {
			p.fail(w, r, warden.Errorf(warden.CodeTooLarge, "params larger than %d bytes", c.MaxRequest), nil)
			return
		}
	}
	call := &gate.Call{
		Principal: who, Connector: c, Op: op, Resource: resource, Params: params,
		Method: op.Method, Path: upPath, ClientIP: clientIP(r), UserAgent: r.UserAgent(),
		RequestID: problem.RequestID(r.Context()), ApprovalID: r.Header.Get("Warden-Approval"), BytesIn: int64(len(body)),
	}
	v, ok := p.check(w, r, call)
	if !ok {
		return
	}
	target := *c.Base
	target.Path = c.Base.Path + upPath
	target.RawQuery = query.Encode()
	ctx, cancel := context.WithTimeout(r.Context(), c.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(ctx, op.Method, target.String(), rd)
	if err != nil {
		p.fail(w, r, warden.Wrap(err, warden.CodeInternal, "building upstream request"), nil)
		return
	}
	if body != nil {
		out.Header.Set("Content-Type", "application/json")
	}
	out.Header.Set("Accept", "application/json")
	out.Header.Set("User-Agent", "warden")
	inject(out, c, v.Credential)
	hc := &http.Client{Transport: p.transport(c), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(out)
	if err != nil {
		cerr := warden.Wrap(err, warden.CodeUpstreamUnavailable, "the upstream did not answer: "+upstreamReason(err))
		p.o.Gate.Complete(context.WithoutCancel(r.Context()), v, 0, 0, err)
		p.fail(w, r, cerr, nil)
		return
	}
	defer resp.Body.Close()
	limit := min(c.MaxResp, maxExecuteResponse)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(raw)) > limit {
		err = fmt.Errorf("upstream response larger than %d bytes", limit)
	}
	if err != nil {
		p.o.Gate.Complete(context.WithoutCancel(r.Context()), v, resp.StatusCode, 0, err)
		p.fail(w, r, warden.Wrap(err, warden.CodeUpstreamUnavailable, "reading the upstream response failed: "+err.Error()), nil)
		return
	}
	scrubResponse(resp.Header, v.Credential)
	res := apitype.ExecuteResponse{Status: resp.StatusCode, Headers: map[string]string{}}
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
	w.Header().Set("Warden-Decision", "allow")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	n, _ := writeJSONCount(w, res)
	ctx2, cancel2 := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel2()
	p.o.Gate.Complete(ctx2, v, resp.StatusCode, n, nil)
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
