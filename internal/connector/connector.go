// Package connector defines connectors: an upstream service's base URL, how
// Warden authenticates to it, and its operations (method + path template +
// class). A compiled connector maps a request to exactly one operation, and
// builds the upstream path from the operation's template, so the request
// that is executed is the one that was decided.
package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"warden"
)

// Document is a connector as written (YAML or JSON).
type Document struct {
	APIVersion          string        `json:"apiVersion" yaml:"apiVersion"`
	Kind                string        `json:"kind" yaml:"kind"`
	Name                string        `json:"name" yaml:"name"`
	Description         string        `json:"description,omitempty" yaml:"description,omitempty"`
	FromCatalog         string        `json:"from_catalog,omitempty" yaml:"from_catalog,omitempty"`
	Type                string        `json:"type,omitempty" yaml:"type,omitempty"` // http (default)
	BaseURL             string        `json:"base_url,omitempty" yaml:"base_url,omitempty"`
	Auth                *Auth         `json:"auth,omitempty" yaml:"auth,omitempty"`
	AllowPrivateNetwork bool          `json:"allow_private_network,omitempty" yaml:"allow_private_network,omitempty"`
	Timeout             string        `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	MaxRequestBytes     int64         `json:"max_request_bytes,omitempty" yaml:"max_request_bytes,omitempty"`
	MaxResponseBytes    int64         `json:"max_response_bytes,omitempty" yaml:"max_response_bytes,omitempty"`
	Operations          []Operation   `json:"operations,omitempty" yaml:"operations,omitempty"`
	MCP                 *MCPSpec      `json:"mcp,omitempty" yaml:"mcp,omitempty"`           // type: mcp (see mcp.go)
	Postgres            *PostgresSpec `json:"postgres,omitempty" yaml:"postgres,omitempty"` // type: postgres (see postgres.go)
}

// Auth says how Warden authenticates to the upstream.
type Auth struct {
	Type string `json:"type" yaml:"type"`                     // bearer | header | basic | query | oauth2 | none
	Name string `json:"name,omitempty" yaml:"name,omitempty"` // header or query parameter name
}

// Operation is one thing an agent can do through the connector.
type Operation struct {
	ID          string         `json:"id" yaml:"id"`
	Method      string         `json:"method" yaml:"method"`
	Path        string         `json:"path" yaml:"path"`
	Class       string         `json:"class" yaml:"class"` // read | write | delete | admin
	Description string         `json:"description,omitempty" yaml:"description,omitempty"`
	Query       []string       `json:"query,omitempty" yaml:"query,omitempty"`             // documented query parameters
	BodySchema  map[string]any `json:"body_schema,omitempty" yaml:"body_schema,omitempty"` // JSON Schema of the body
}

// MaxDocumentSize bounds a connector document.
const MaxDocumentSize = 4 << 20

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	opIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	paramRE  = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$`)
	litSegRE = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+,;=:@-]+$`)
	methods  = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}
	classes  = map[string]bool{"read": true, "write": true, "delete": true, "admin": true}
	authTyps = map[string]bool{"bearer": true, "header": true, "basic": true, "query": true, "oauth2": true, "none": true}
)

// ValidName reports whether s is a valid connector name: lowercase letters,
// digits, '_' and '-' (no '.' or ':': names are the first half of actions).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Parse decodes a connector document strictly (unknown keys are errors).
func Parse(data []byte, contentType string) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, warden.Errorf(warden.CodeTooLarge, "connector document larger than %d bytes", MaxDocumentSize)
	}
	var d Document
	mt := "application/yaml"
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, warden.FieldError("content_type", "cannot parse %q", contentType)
		}
	} else if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		mt = "application/json"
	}
	switch mt {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, warden.Errorf(warden.CodeInvalid, "connector document: %s", cleanErr(err))
		}
		if dec.More() {
			return nil, warden.Errorf(warden.CodeInvalid, "connector document: trailing data")
		}
	case "application/yaml", "text/yaml", "application/x-yaml":
		var probe yaml.Node
		if err := yaml.Unmarshal(data, &probe); err != nil {
			return nil, warden.Errorf(warden.CodeInvalid, "connector document: %s", cleanErr(err))
		}
		if err := checkYAML(&probe, 0); err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
			return nil, warden.Errorf(warden.CodeInvalid, "connector document: %s", cleanErr(err))
		}
	default:
		return nil, warden.FieldError("content_type", "send application/yaml or application/json, not %q", mt)
	}
	if d.APIVersion != "warden/v1" {
		return nil, warden.FieldError("apiVersion", "must be warden/v1")
	}
	if d.Kind != "Connector" {
		return nil, warden.FieldError("kind", "must be Connector")
	}
	return &d, nil
}

// checkYAML refuses aliases (no YAML bombs) and deep nesting.
func checkYAML(n *yaml.Node, depth int) error {
	if depth > 64 {
		return warden.Errorf(warden.CodeInvalid, "connector document nests deeper than 64 levels")
	}
	if n.Kind == yaml.AliasNode {
		return warden.Errorf(warden.CodeInvalid, "line %d: YAML aliases are not allowed in connector documents", n.Line)
	}
	for _, c := range n.Content {
		if err := checkYAML(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func cleanErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "json: ")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// Connector is a validated, compiled connector.
type Connector struct {
	Doc        *Document
	Name       string
	Base       *url.URL
	Timeout    time.Duration
	MaxRequest int64
	MaxResp    int64
	router     *router
	ops        map[string]*Op
	mcpTools   map[string]*MCPTool // operation id -> approved tool (MCP connectors)
}

// Op is a compiled operation.
type Op struct {
	Operation
	Action   string // connector:operation
	segments []segment
}

type segment struct {
	literal string // when param == ""
	param   string
}

// Compile validates a document and builds its router. urlName, when given,
// must agree with the document's name (a document without one takes it).
func Compile(d *Document, urlName string) (*Connector, error) {
	if d.Name == "" {
		d.Name = urlName
	}
	if urlName != "" && d.Name != urlName {
		return nil, warden.FieldError("name", "the document names connector %q but the URL names %q", d.Name, urlName)
	}
	if !ValidName(d.Name) {
		return nil, warden.FieldError("name", "must be 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit")
	}
	if d.Type == TypeMCP {
		return compileMCP(d)
	}
	if d.Type == TypePostgres {
		return compilePostgres(d)
	}
	if d.Postgres != nil {
		return nil, warden.FieldError("postgres", "is only for connectors of type postgres")
	}
	if d.MCP != nil {
		return nil, warden.FieldError("mcp", "is only for connectors of type mcp")
	}
	if d.Type != "" && d.Type != "http" {
		return nil, warden.FieldError("type", "connector type %q is not supported here (want http, mcp or postgres)", d.Type)
	}
	if d.FromCatalog != "" {
		return nil, warden.FieldError("from_catalog", "must be resolved against the catalog before compiling")
	}
	u, err := url.Parse(d.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, warden.FieldError("base_url", "must be an absolute http(s) URL without credentials, query or fragment")
	}
	if u.Scheme == "http" && !d.AllowPrivateNetwork {
		return nil, warden.FieldError("base_url", "plain http is allowed only with allow_private_network (internal services and tests); use https")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	c := &Connector{Doc: d, Name: d.Name, Base: u, Timeout: 30 * time.Second, MaxRequest: 10 << 20, MaxResp: 64 << 20, ops: map[string]*Op{}}
	if err := applyLimits(d, c); err != nil {
		return nil, err
	}
	if d.Auth == nil {
		d.Auth = &Auth{Type: "none"}
	}
	if !authTyps[d.Auth.Type] {
		return nil, warden.FieldError("auth.type", "must be bearer, header, basic, query, oauth2 or none")
	}
	if (d.Auth.Type == "header" || d.Auth.Type == "query") && d.Auth.Name == "" {
		return nil, warden.FieldError("auth.name", "is required for auth type %s", d.Auth.Type)
	}
	if len(d.Operations) == 0 {
		return nil, warden.FieldError("operations", "at least one operation is required")
	}
	c.router = newRouter()
	for i, o := range d.Operations {
		field := fmt.Sprintf("operations[%d]", i)
		if !opIDRE.MatchString(o.ID) {
			return nil, warden.FieldError(field+".id", "must be lowercase letters, digits, '.', '_' or '-' (e.g. issues.create)")
		}
		if _, dup := c.ops[o.ID]; dup {
			return nil, warden.FieldError(field+".id", "duplicate operation id %q", o.ID)
		}
		o.Method = strings.ToUpper(o.Method)
		if !methods[o.Method] {
			return nil, warden.FieldError(field+".method", "must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		}
		if !classes[o.Class] {
			return nil, warden.FieldError(field+".class", "must be read, write, delete or admin")
		}
		segs, err := parseTemplate(o.Path)
		if err != nil {
			return nil, warden.FieldError(field+".path", "%s", err.Error())
		}
		op := &Op{Operation: o, Action: d.Name + ":" + o.ID, segments: segs}
		if err := c.router.add(o.Method, segs, op); err != nil {
			return nil, warden.FieldError(field+".path", "%s", err.Error())
		}
		c.ops[o.ID] = op
	}
	return c, nil
}

// parseTemplate splits "/repos/{owner}/{repo}" into segments.
func parseTemplate(p string) ([]segment, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("must start with /")
	}
	if p == "/" {
		return nil, nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	seen := map[string]bool{}
	segs := make([]segment, 0, len(parts))
	for _, s := range parts {
		if m := paramRE.FindStringSubmatch(s); m != nil {
			if seen[m[1]] {
				return nil, fmt.Errorf("parameter {%s} appears twice", m[1])
			}
			seen[m[1]] = true
			segs = append(segs, segment{param: m[1]})
			continue
		}
		if s == "" || s == "." || s == ".." || !litSegRE.MatchString(s) {
			return nil, fmt.Errorf("segment %q is not a plain path segment or a {param}", s)
		}
		segs = append(segs, segment{literal: s})
	}
	return segs, nil
}

// Operation returns the operation with the given id.
func (c *Connector) Operation(id string) (*Op, bool) {
	op, ok := c.ops[id]
	return op, ok
}

// Operations lists the compiled operations in document order.
func (c *Connector) Operations() []*Op {
	out := make([]*Op, 0, len(c.Doc.Operations))
	for _, o := range c.Doc.Operations {
		out = append(out, c.ops[o.ID])
	}
	return out
}

// BuildPath builds the upstream path for op from path parameter values, each
// escaped as one segment. Missing or unsafe values are errors.
func (op *Op) BuildPath(params map[string]string) (string, error) {
	var b strings.Builder
	for _, s := range op.segments {
		b.WriteByte('/')
		if s.param == "" {
			b.WriteString(s.literal)
			continue
		}
		v, ok := params[s.param]
		if !ok || v == "" {
			return "", warden.FieldError("resource."+s.param, "is required by %s", op.Action)
		}
		if err := checkParamValue(v); err != nil {
			return "", &warden.Error{Code: warden.CodeInvalid, Field: "resource." + s.param, Message: err.Error()}
		}
		b.WriteString(url.PathEscape(v))
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// PathParams lists the operation's path parameter names in order.
func (op *Op) PathParams() []string {
	var out []string
	for _, s := range op.segments {
		if s.param != "" {
			out = append(out, s.param)
		}
	}
	return out
}

// checkParamValue refuses values that an upstream might read as more than
// one segment or decode again.
func checkParamValue(v string) error {
	switch {
	case v == "." || v == "..":
		return errors.New("must not be a dot segment")
	case strings.ContainsAny(v, "/\\%"):
		return errors.New("must not contain '/', '\\' or '%'")
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("must not contain control characters")
	case len(v) > 1024:
		return errors.New("is longer than 1024 bytes")
	}
	return nil
}

// applyLimits sets the timeout and size limits a document gives, within the
// bounds every connector type shares.
func applyLimits(d *Document, c *Connector) error {
	if d.Timeout != "" {
		t, err := time.ParseDuration(d.Timeout)
		if err != nil || t <= 0 || t > 10*time.Minute {
			return warden.FieldError("timeout", "must be a duration between 1ms and 10m")
		}
		c.Timeout = t
	}
	if d.MaxRequestBytes != 0 {
		if d.MaxRequestBytes < 0 || d.MaxRequestBytes > 1<<30 {
			return warden.FieldError("max_request_bytes", "must be between 1 and 1 GiB")
		}
		c.MaxRequest = d.MaxRequestBytes
	}
	if d.MaxResponseBytes != 0 {
		if d.MaxResponseBytes < 0 || d.MaxResponseBytes > 1<<31 {
			return warden.FieldError("max_response_bytes", "must be between 1 and 2 GiB")
		}
		c.MaxResp = d.MaxResponseBytes
	}
	return nil
}
