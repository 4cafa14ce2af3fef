package connector

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"warden"
)

// TypeMCP is the connector type of an upstream MCP server.
const TypeMCP = "mcp"

// MCPSpec is the mcp part of a `type: mcp` connector: where the upstream
// MCP server is (a streamable HTTP URL, or a stdio command Warden starts)
// and the tool definitions an admin approved.
//
// Tools is written by Warden, not by hand: the connector PUT connects to
// the upstream, lists its tools and records them here, each with its pin;
// `warden connector accept-changes` records them again. The stored document
// is therefore the approved snapshot, versioned and recorded as an admin
// change like any connector document. A tool the upstream offers that is
// not in this list does not exist for agents; a tool whose upstream
// definition no longer matches its pin is blocked.
type MCPSpec struct {
	URL     string   `json:"url,omitempty" yaml:"url,omitempty"`
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	// Env maps an environment variable of the stdio server to a field of
	// the connector's credential (e.g. GITHUB_TOKEN: token).
	Env   map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Tools []MCPTool         `json:"tools,omitempty" yaml:"tools,omitempty"`
}

// MCPTool is one approved upstream tool: the connector operation it is, and
// the definition that was approved.
type MCPTool struct {
	// Name is the upstream's tool name, sent upstream on tools/call.
	Name string `json:"name" yaml:"name"`
	// Operation is the operation id (the action is connector:operation).
	Operation   string         `json:"operation" yaml:"operation"`
	Class       string         `json:"class" yaml:"class"`
	Description string         `json:"description,omitempty" yaml:"description,omitempty"`
	InputSchema map[string]any `json:"input_schema,omitempty" yaml:"input_schema,omitempty"`
	// SHA256 is the pin: ToolPin of name, description and input schema.
	SHA256 string `json:"sha256" yaml:"sha256"`
	// Warnings are what the import found suspicious in the definition
	// (hidden-instruction patterns); kept so an admin can list them.
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// AuthEnv is the auth type of a stdio MCP connector whose credential is
// passed in environment variables (set when mcp.env is not empty).
const AuthEnv = "env"

var (
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	credFieldRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	opInvalidRE = regexp.MustCompile(`[^a-z0-9._-]+`)
)

// ToolPin returns the pin of a tool definition: the hex SHA-256 of the
// canonical JSON of {name, description, inputSchema} (object keys sorted,
// as encoding/json writes maps). Any change to the name, the description or
// the schema changes the pin.
func ToolPin(name, description string, inputSchema any) (string, error) {
	b, err := json.Marshal(struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		InputSchema any    `json:"inputSchema"`
	}{name, description, inputSchema})
	if err != nil {
		return "", err
	}
	// Re-decode and re-encode so that the same schema gives the same bytes
	// whatever Go types it arrived in (struct fields, YAML maps, numbers).
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", err
	}
	if b, err = json.Marshal(v); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// ToolOperationID derives an operation id from an upstream tool name: the
// name itself when it is a valid operation id, otherwise lower-cased with
// every run of other characters replaced by '_'. The derivation is not
// injective (createIssue and create_issue both give create_issue); the PUT
// refuses a tool list where two tools collide, and the recorded MCPTool
// keeps both names, so the mapping back is exact.
func ToolOperationID(name string) (string, error) {
	if opIDRE.MatchString(name) {
		return name, nil
	}
	id := opInvalidRE.ReplaceAllString(strings.ToLower(name), "_")
	id = strings.TrimLeft(id, "._-")
	if !opIDRE.MatchString(id) {
		return "", fmt.Errorf("tool name %q gives no valid operation id", clip(name))
	}
	return id, nil
}

// ToolClass maps MCP tool annotations to an operation class: readOnlyHint
// -> read, destructiveHint -> delete, anything else -> write. Annotations
// are hints from the upstream; policies decide, the class only feeds
// action.class.
func ToolClass(readOnly bool, destructive *bool) string {
	switch {
	case readOnly:
		return "read"
	case destructive != nil && *destructive:
		return "delete"
	}
	return "write"
}

// compileMCP compiles a type: mcp connector: its operations are the
// approved tools. Such a connector has no HTTP routes (the proxy front
// matches nothing on it) and its operations are called only by the MCP
// front.
func compileMCP(d *Document) (*Connector, error) {
	m := d.MCP
	if m == nil {
		return nil, warden.FieldError("mcp", "a connector of type mcp needs mcp: {url: ...} or mcp: {command: [...]}")
	}
	if d.FromCatalog != "" {
		return nil, warden.FieldError("from_catalog", "is not available for MCP connectors")
	}
	if d.BaseURL != "" {
		return nil, warden.FieldError("base_url", "MCP connectors name their server in mcp.url or mcp.command")
	}
	if len(d.Operations) > 0 {
		return nil, warden.FieldError("operations", "the operations of an MCP connector are its upstream's tools, recorded in mcp.tools")
	}
	c := &Connector{Doc: d, Name: d.Name, Timeout: 30 * time.Second, MaxRequest: 10 << 20, MaxResp: 64 << 20, ops: map[string]*Op{}, router: newRouter()}
	switch {
	case m.URL != "" && len(m.Command) > 0:
		return nil, warden.FieldError("mcp", "give either url or command, not both")
	case m.URL != "":
		u, err := url.Parse(m.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return nil, warden.FieldError("mcp.url", "must be an absolute http(s) URL without credentials or fragment")
		}
		if u.Scheme == "http" && !d.AllowPrivateNetwork {
			return nil, warden.FieldError("mcp.url", "plain http is allowed only with allow_private_network (internal services and tests); use https")
		}
		if len(m.Env) > 0 {
			return nil, warden.FieldError("mcp.env", "is only for stdio servers (mcp.command); an HTTP server gets its credential per auth")
		}
		c.Base = u
		if d.Auth == nil {
			d.Auth = &Auth{Type: "none"}
		}
		if !authTyps[d.Auth.Type] {
			return nil, warden.FieldError("auth.type", "must be bearer, header, basic, query, oauth2 or none")
		}
		if (d.Auth.Type == "header" || d.Auth.Type == "query") && d.Auth.Name == "" {
			return nil, warden.FieldError("auth.name", "is required for auth type %s", d.Auth.Type)
		}
	case len(m.Command) > 0:
		for i, a := range m.Command {
			if (i == 0 && a == "") || strings.ContainsRune(a, 0) {
				return nil, warden.FieldError(fmt.Sprintf("mcp.command[%d]", i), "must be a non-empty argument without NUL bytes")
			}
		}
		if d.Auth != nil && d.Auth.Type != "none" && d.Auth.Type != AuthEnv {
			return nil, warden.FieldError("auth", "a stdio MCP server gets its credential in environment variables (mcp.env), not per auth")
		}
		for k, v := range m.Env {
			if !envNameRE.MatchString(k) {
				return nil, warden.FieldError("mcp.env", "%q is not an environment variable name", clip(k))
			}
			if !credFieldRE.MatchString(v) {
				return nil, warden.FieldError("mcp.env."+k, "must name a credential field (e.g. token, value, password)")
			}
		}
		d.Auth = &Auth{Type: "none"}
		if len(m.Env) > 0 {
			d.Auth = &Auth{Type: AuthEnv}
		}
		c.Base = &url.URL{Scheme: "stdio", Opaque: url.PathEscape(m.Command[0])}
	default:
		return nil, warden.FieldError("mcp", "give url (streamable HTTP) or command (stdio)")
	}
	// The same bounds as HTTP connectors.
	if err := applyLimits(d, c); err != nil {
		return nil, err
	}
	if len(m.Tools) == 0 {
		return nil, warden.FieldError("mcp.tools", "no approved tools: Warden records the upstream's tools when the connector is PUT through the API (the upstream must be reachable and offer at least one tool)")
	}
	names := map[string]bool{}
	for i := range m.Tools {
		t := &m.Tools[i]
		field := fmt.Sprintf("mcp.tools[%d]", i)
		if t.Name == "" || len(t.Name) > 128 {
			return nil, warden.FieldError(field+".name", "must be 1-128 characters")
		}
		if names[t.Name] {
			return nil, warden.FieldError(field+".name", "duplicate tool %q", clip(t.Name))
		}
		names[t.Name] = true
		if !opIDRE.MatchString(t.Operation) {
			return nil, warden.FieldError(field+".operation", "must be lowercase letters, digits, '.', '_' or '-'")
		}
		if prev, dup := c.ops[t.Operation]; dup {
			return nil, warden.FieldError(field+".operation", "tools %q and %q map to the same operation %q", clip(prev.Operation.Path), clip(t.Name), t.Operation)
		}
		if !classes[t.Class] {
			return nil, warden.FieldError(field+".class", "must be read, write, delete or admin")
		}
		pin, err := ToolPin(t.Name, t.Description, schemaOrEmpty(t.InputSchema))
		if err != nil {
			return nil, warden.FieldError(field+".input_schema", "cannot be encoded as JSON")
		}
		if t.SHA256 != "" && t.SHA256 != pin {
			return nil, warden.FieldError(field+".sha256", "does not match the recorded definition of tool %q (edit the definition only through accept-changes)", clip(t.Name))
		}
		t.SHA256 = pin
		o := Operation{ID: t.Operation, Class: t.Class, Description: t.Description, BodySchema: t.InputSchema}
		d.Operations = append(d.Operations, o)
		// Path holds the upstream tool name for display (GET /v1/connectors
		// shows it); MCP operations have no HTTP method or route.
		o.Path = t.Name
		c.ops[t.Operation] = &Op{Operation: o, Action: d.Name + ":" + t.Operation}
	}
	// Every fronted call looks its tool up by operation (an upstream may
	// offer thousands).
	c.mcpTools = make(map[string]*MCPTool, len(m.Tools))
	for i := range m.Tools {
		c.mcpTools[m.Tools[i].Operation] = &m.Tools[i]
	}
	return c, nil
}

// schemaOrEmpty returns the schema, or an empty object schema for none, so
// that a tool without inputSchema pins the same as one with {}.
func schemaOrEmpty(s map[string]any) any {
	if s == nil {
		return map[string]any{}
	}
	return s
}

// MCPTool returns the approved tool behind an operation of an MCP
// connector.
func (c *Connector) MCPTool(opID string) (*MCPTool, bool) {
	t, ok := c.mcpTools[opID]
	return t, ok
}

// IsMCP reports whether c fronts an upstream MCP server.
func (c *Connector) IsMCP() bool { return c.Doc.Type == TypeMCP }

// CheckWrite fails unless p may change connectors (the connector PUT and
// accept-changes, checked before Warden connects to an upstream for them).
func CheckWrite(p warden.Principal) error {
	if !canWrite(p) {
		return warden.Errorf(warden.CodeForbidden, "changing connectors needs the admin or security role")
	}
	return nil
}
