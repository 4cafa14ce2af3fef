package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"warden"
	"warden/internal/connector"
)

// PrepareConnector runs before a connector PUT is saved. For a document of
// type mcp it connects to the upstream (with the connector's default
// credential), lists its tools and records them in mcp.tools with their
// pins and hidden-instruction warnings: the PUT approves the definitions
// it finds. Any tools in the sent document are replaced. Other documents
// pass through unchanged. The caller's right to change connectors is
// checked before Warden connects anywhere.
func (g *Gateway) PrepareConnector(ctx context.Context, p warden.Principal, name string, body []byte, contentType string) ([]byte, string, error) {
	d, err := connector.Parse(body, contentType)
	if err != nil || d.Type != connector.TypeMCP {
		return body, contentType, nil // the registry reports parse errors
	}
	if err := connector.CheckWrite(p); err != nil {
		return nil, "", err
	}
	if d.Name == "" {
		d.Name = name
	}
	tools, err := g.discover(ctx, d, name)
	if err != nil {
		return nil, "", err
	}
	d.MCP.Tools = tools
	out, err := json.Marshal(d)
	if err != nil {
		return nil, "", warden.Wrap(err, warden.CodeInternal, "encoding the connector document")
	}
	return out, "application/json", nil
}

// discover validates d's connection settings, connects and returns the
// upstream's tools as approved definitions.
func (g *Gateway) discover(ctx context.Context, d *connector.Document, name string) ([]connector.MCPTool, error) {
	if d.MCP == nil {
		return nil, warden.FieldError("mcp", "a connector of type mcp needs mcp: {url: ...} or mcp: {command: [...]}")
	}
	// Compile a copy with a placeholder tool: every setting is validated
	// before Warden dials anything.
	probe := *d
	spec := *d.MCP
	spec.Tools = []connector.MCPTool{{Name: "probe", Operation: "probe", Class: "read"}}
	probe.MCP = &spec
	if probe.Auth != nil {
		a := *probe.Auth
		probe.Auth = &a
	}
	c, err := connector.Compile(&probe, name)
	if err != nil {
		return nil, err
	}
	m, err := g.o.Credentials.Resolve(ctx, c.Name, "")
	switch {
	case err == nil:
	case c.Doc.Auth.Type == "none" && warden.IsCode(err, warden.CodeNoCredential):
		m = nil
	default:
		return nil, warden.Wrap(err, warden.ErrorCode(err), fmt.Sprintf("Warden lists the upstream's tools with the connector's default credential (one not bound to an identity): %s", describe(err)))
	}
	dctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cs, _, err := g.dial(dctx, c, m, nil)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUpstreamUnavailable, "cannot connect to the upstream MCP server to list its tools: "+clip(err.Error()))
	}
	defer cs.Close()
	list, err := listAll(dctx, cs)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeUpstreamUnavailable, "listing the upstream's tools failed: "+clip(err.Error()))
	}
	return approve(list)
}

// approve turns upstream tool definitions into approved ones.
func approve(list []*sdk.Tool) ([]connector.MCPTool, error) {
	if len(list) == 0 {
		return nil, warden.FieldError("mcp", "the upstream MCP server offers no tools")
	}
	out := make([]connector.MCPTool, 0, len(list))
	byOp := map[string]string{}
	for _, t := range list {
		op, err := connector.ToolOperationID(t.Name)
		if err != nil {
			return nil, warden.FieldError("mcp.tools", "%s", err.Error())
		}
		if prev, dup := byOp[op]; dup {
			return nil, warden.FieldError("mcp.tools", "upstream tools %q and %q both map to operation %q", clip(prev), clip(t.Name), op)
		}
		byOp[op] = t.Name
		var schema map[string]any
		if t.InputSchema != nil {
			b, err := json.Marshal(t.InputSchema)
			if err != nil || json.Unmarshal(b, &schema) != nil {
				return nil, warden.FieldError("mcp.tools", "tool %q has an input schema that is not a JSON object", clip(t.Name))
			}
		}
		mt := connector.MCPTool{Name: t.Name, Operation: op, Class: "write", Description: t.Description, InputSchema: schema}
		if a := t.Annotations; a != nil {
			mt.Class = connector.ToolClass(a.ReadOnlyHint, a.DestructiveHint)
		}
		if mt.SHA256, err = connector.ToolPin(t.Name, t.Description, orEmpty(anyMap(schema))); err != nil {
			return nil, warden.FieldError("mcp.tools", "tool %q cannot be pinned", clip(t.Name))
		}
		mt.Warnings = PoisonWarnings(t.Description, schema)
		if _, err := resolveSchema(schema); err != nil {
			mt.Warnings = append(mt.Warnings, "input schema cannot be checked by Warden; calls to this tool are refused: "+clip(err.Error()))
		}
		out = append(out, mt)
	}
	slices.SortFunc(out, func(a, b connector.MCPTool) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

func anyMap(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// AcceptResult is what `accept-changes` approved.
type AcceptResult struct {
	Connector string   `json:"connector"`
	Version   int64    `json:"version"`
	Changed   []string `json:"changed"`
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Warnings  []string `json:"warnings"`
}

// AcceptChanges approves the upstream's current tool definitions for an MCP
// connector: it lists them again and saves the connector with the new
// pins (a new version, recorded as an admin change). Tools blocked because
// their definition changed are callable again from the next call.
func (g *Gateway) AcceptChanges(ctx context.Context, p warden.Principal, name string) (*AcceptResult, error) {
	if err := connector.CheckWrite(p); err != nil {
		return nil, err
	}
	st, err := g.o.Connectors.GetStored(ctx, p, name)
	if err != nil {
		return nil, err
	}
	d, err := connector.Parse(st.Document, st.ContentType)
	if err != nil {
		return nil, err
	}
	if d.Type != connector.TypeMCP || d.MCP == nil {
		return nil, warden.Errorf(warden.CodeInvalid, "connector %s is not an MCP connector", name)
	}
	old := map[string]string{}
	for _, t := range d.MCP.Tools {
		old[t.Name] = t.SHA256
	}
	tools, err := g.discover(ctx, d, name)
	if err != nil {
		return nil, err
	}
	res := &AcceptResult{Connector: name, Changed: []string{}, Added: []string{}, Removed: []string{}, Warnings: []string{}}
	for _, t := range tools {
		pin, ok := old[t.Name]
		switch {
		case !ok:
			res.Added = append(res.Added, t.Name)
		case pin != t.SHA256:
			res.Changed = append(res.Changed, t.Name)
		}
		delete(old, t.Name)
		for _, w := range t.Warnings {
			res.Warnings = append(res.Warnings, t.Name+": "+w)
		}
	}
	for n := range old {
		res.Removed = append(res.Removed, n)
	}
	slices.Sort(res.Removed)
	d.MCP.Tools = tools
	body, err := json.Marshal(d)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "encoding the connector document")
	}
	saved, _, err := g.o.Connectors.Put(ctx, p, name, body, "application/json")
	if err != nil {
		return nil, err
	}
	res.Version = saved.Version
	return res, nil
}

// ToolState is an approved or offered tool of an MCP connector, compared
// with what the upstream offers now.
type ToolState struct {
	Tool      string `json:"tool"` // the name agents see
	Name      string `json:"name"` // the upstream's name
	Operation string `json:"operation"`
	Class     string `json:"class,omitempty"`
	// Status: approved (matches its pin), changed (blocked until
	// accepted), missing (no longer offered), new (offered, not approved:
	// agents cannot see or call it), unknown (the upstream could not be
	// listed).
	Status         string   `json:"status"`
	ApprovedSHA256 string   `json:"approved_sha256,omitempty"`
	UpstreamSHA256 string   `json:"upstream_sha256,omitempty"`
	Warnings       []string `json:"warnings"`
}

// ToolList is the answer of GET /v1/connectors/{name}/tools.
type ToolList struct {
	Connector string      `json:"connector"`
	Error     string      `json:"error,omitempty"`
	Tools     []ToolState `json:"tools"`
}

// Tools lists an MCP connector's approved tools and how the upstream
// defines them now (it is listed afresh), with stored and current
// hidden-instruction warnings.
func (g *Gateway) Tools(ctx context.Context, p warden.Principal, name string) (*ToolList, error) {
	if err := connector.CheckRead(p); err != nil {
		return nil, err
	}
	c, ok := g.o.Connectors.Get(name)
	if !ok {
		return nil, warden.Errorf(warden.CodeNotFound, "connector %q not found", name)
	}
	if !c.IsMCP() {
		return nil, warden.Errorf(warden.CodeInvalid, "connector %s is not an MCP connector", name)
	}
	out := &ToolList{Connector: name, Tools: []ToolState{}}
	listed, err := g.listNow(ctx, c)
	if err != nil {
		out.Error = describe(err)
	}
	// listed is shared with the link and the drift state: work on a copy.
	var current map[string]observed
	if listed != nil {
		current = maps.Clone(listed)
	}
	for _, t := range c.Doc.MCP.Tools {
		tn, _ := ToolName(c.Name, t.Operation)
		s := ToolState{Tool: tn, Name: t.Name, Operation: t.Operation, Class: t.Class, ApprovedSHA256: t.SHA256, Warnings: append([]string{}, t.Warnings...)}
		o, seen := current[t.Name]
		switch {
		case current == nil:
			s.Status = "unknown"
		case !seen:
			s.Status = "missing"
		case o.pin == t.SHA256:
			s.Status = "approved"
		default:
			s.Status = "changed"
			for _, w := range PoisonWarnings(o.tool.Description, o.tool.InputSchema) {
				s.Warnings = append(s.Warnings, "upstream now: "+w)
			}
		}
		if seen {
			s.UpstreamSHA256 = o.pin
		}
		delete(current, t.Name)
		out.Tools = append(out.Tools, s)
	}
	for n, o := range current {
		op, _ := connector.ToolOperationID(n)
		out.Tools = append(out.Tools, ToolState{Name: n, Operation: op, Status: "new", UpstreamSHA256: o.pin, Warnings: PoisonWarnings(o.tool.Description, o.tool.InputSchema)})
	}
	return out, nil
}

// listNow lists the upstream's tools with the connector's default
// credential and records them as the current definitions.
func (g *Gateway) listNow(ctx context.Context, c *connector.Connector) (map[string]observed, error) {
	m, err := g.o.Credentials.Resolve(ctx, c.Name, "")
	if err != nil && !(c.Doc.Auth.Type == "none" && warden.IsCode(err, warden.CodeNoCredential)) {
		return nil, err
	}
	l := g.link(c, m)
	cs, err := l.ready(ctx)
	if err != nil {
		return nil, err
	}
	return l.list(ctx, cs)
}
