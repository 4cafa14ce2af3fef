package mcp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"

	"warden/internal/connector"
)

// httpInputSchema builds a tool's input schema from an HTTP operation:
// every path parameter is a required string property (it becomes the call's
// resource), every documented query parameter a property, and the
// properties and required list of an object body_schema are merged in
// (they become params). A body property with the name of a path parameter
// is left out: the argument fills the path.
func httpInputSchema(op *connector.Op) map[string]any {
	props := map[string]any{}
	var required []string
	for _, p := range op.PathParams() {
		props[p] = map[string]any{"type": "string", "description": "path parameter {" + p + "}"}
		required = append(required, p)
	}
	for _, q := range op.Query {
		if _, dup := props[q]; !dup {
			props[q] = map[string]any{"description": "query parameter " + q, "type": []any{"string", "number", "integer", "boolean", "array"}}
		}
	}
	schema := map[string]any{"type": "object"}
	if bs := op.BodySchema; bs != nil {
		if bp, ok := bs["properties"].(map[string]any); ok {
			for k, v := range bp {
				if _, dup := props[k]; !dup {
					props[k] = v
				}
			}
		}
		if req, ok := bs["required"].([]any); ok {
			for _, r := range req {
				if s, ok := r.(string); ok && !slices.Contains(required, s) {
					required = append(required, s)
				}
			}
		}
		if ap, ok := bs["additionalProperties"]; ok {
			schema["additionalProperties"] = ap
		}
	}
	schema["properties"] = props
	if len(required) > 0 {
		slices.Sort(required)
		schema["required"] = required
	}
	return schema
}

// splitArgs splits a tool call's arguments into resource (the operation's
// path parameters) and params (everything else), as /v1/execute takes them.
func splitArgs(op *connector.Op, args map[string]any) (resource, params map[string]any) {
	pp := op.PathParams()
	params = make(map[string]any, len(args))
	for k, v := range args {
		if slices.Contains(pp, k) {
			if resource == nil {
				resource = map[string]any{}
			}
			resource[k] = v
			continue
		}
		params[k] = v
	}
	return resource, params
}

// validators caches resolved input schemas per compiled operation (compiled
// connectors are immutable; a replaced connector has new *Op values).
type validators struct {
	m sync.Map // *connector.Op -> *validator
}

type validator struct {
	rs  *jsonschema.Resolved
	err error
}

// validate checks args against the operation's input schema, built and
// resolved on its first call only. A schema Warden cannot resolve refuses
// every call (fail closed) with a message saying so.
func (vs *validators) validate(c *connector.Connector, op *connector.Op, args map[string]any) error {
	v, ok := vs.m.Load(op)
	if !ok {
		nv := &validator{}
		nv.rs, nv.err = resolveSchema(inputSchema(c, op))
		v, _ = vs.m.LoadOrStore(op, nv)
	}
	val := v.(*validator)
	if val.err != nil {
		return fmt.Errorf("Warden cannot check arguments against this tool's input schema (%v); the call is refused", val.err)
	}
	if err := val.rs.Validate(args); err != nil {
		return fmt.Errorf("arguments do not match the tool's input schema: %s", clip(strings.TrimPrefix(err.Error(), "validating root: ")))
	}
	return nil
}

// inputSchema is the schema a call's arguments are checked against: an
// MCP tool's approved schema, or the one built from an HTTP operation.
func inputSchema(c *connector.Connector, op *connector.Op) map[string]any {
	if !c.IsMCP() {
		return httpInputSchema(op)
	}
	if mt, ok := c.MCPTool(op.ID); ok {
		return objectSchema(mt.InputSchema)
	}
	return nil
}

func resolveSchema(schema map[string]any) (*jsonschema.Resolved, error) {
	if schema == nil {
		schema = map[string]any{"type": "object"}
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return s.Resolve(nil)
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
