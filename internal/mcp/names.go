package mcp

import (
	"strings"
)

// ToolSeparator joins the connector and the operation in the tool names
// agents see.
const ToolSeparator = "__"

// maxToolName is the longest tool name offered (MCP tool names are 1-128
// characters of A-Z a-z 0-9 _ - .).
const maxToolName = 128

// ToolName returns the tool name of a connector operation:
// "<connector>__<operation>", e.g. github__issues.create or
// github-mcp__create_issue. Connector names cannot contain '.', ':' or upper
// case, and operation ids only lowercase letters, digits, '.', '_' and '-',
// so every name is a valid MCP tool name. ok is false when the operation
// cannot be offered under a reversible name: the connector name contains
// "__" (the first "__" must be the separator) or the name would be longer
// than 128 characters.
func ToolName(connector, operation string) (name string, ok bool) {
	if strings.Contains(connector, ToolSeparator) || connector == "" || operation == "" {
		return "", false
	}
	name = connector + ToolSeparator + operation
	if len(name) > maxToolName {
		return "", false
	}
	return name, true
}

// ParseToolName inverts ToolName: the connector is everything before the
// first "__", the operation everything after it.
func ParseToolName(name string) (connector, operation string, ok bool) {
	connector, operation, ok = strings.Cut(name, ToolSeparator)
	if !ok || connector == "" || operation == "" {
		return "", "", false
	}
	return connector, operation, true
}
