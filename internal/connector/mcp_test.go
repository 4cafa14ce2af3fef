package connector

import (
	"testing"

	"warden"
)

func TestCompileMCP(t *testing.T) {
	pin, err := ToolPin("create_issue", "Create an issue.", map[string]any{"type": "object"})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(extra string) string {
		return "apiVersion: warden/v1\nkind: Connector\nname: gh\ntype: mcp\n" + extra
	}
	tools := `
  tools:
    - {name: create_issue, operation: create_issue, class: write, description: Create an issue., input_schema: {type: object}, sha256: ` + pin + `}
    - {name: listIssues, operation: listissues, class: read}
`
	cases := []struct {
		name, doc, field string
	}{
		{"url", ok("allow_private_network: true\nmcp:\n  url: http://127.0.0.1:9/mcp" + tools), ""},
		{"stdio with env", ok("mcp:\n  command: [/usr/bin/server, --stdio]\n  env: {GITHUB_TOKEN: token}" + tools), ""},
		{"no mcp", ok(""), "mcp"},
		{"both", ok("mcp:\n  url: https://x.example/mcp\n  command: [a]" + tools), "mcp"},
		{"plain http", ok("mcp:\n  url: http://x.example/mcp" + tools), "mcp.url"},
		{"env for http", ok("mcp:\n  url: https://x.example/mcp\n  env: {A: token}" + tools), "mcp.env"},
		{"bad env name", ok("mcp:\n  command: [a]\n  env: {\"A B\": token}" + tools), "mcp.env"},
		{"auth for stdio", ok("auth: {type: bearer}\nmcp:\n  command: [a]" + tools), "auth"},
		{"no tools", ok("mcp:\n  url: https://x.example/mcp\n"), "mcp.tools"},
		{"operations", ok("operations: [{id: a, method: GET, path: /, class: read}]\nmcp:\n  url: https://x.example/mcp" + tools), "operations"},
		{"tampered pin", ok("mcp:\n  url: https://x.example/mcp\n  tools:\n    - {name: create_issue, operation: create_issue, class: write, description: Changed., input_schema: {type: object}, sha256: " + pin + "}\n"), "mcp.tools[0].sha256"},
		{"duplicate operation", ok("mcp:\n  url: https://x.example/mcp\n  tools:\n    - {name: a, operation: a, class: read}\n    - {name: A, operation: a, class: read}\n"), "mcp.tools[1].operation"},
		{"mcp on http", "apiVersion: warden/v1\nkind: Connector\nname: gh\nbase_url: https://x.example\noperations: [{id: a, method: GET, path: /, class: read}]\nmcp: {url: https://x.example/mcp}\n", "mcp"},
	}
	for _, c := range cases {
		d, err := Parse([]byte(c.doc), "application/yaml")
		if err == nil {
			var conn *Connector
			conn, err = Compile(d, "gh")
			if err == nil && c.field == "" {
				if _, ok := conn.Operation("create_issue"); !ok || !conn.IsMCP() {
					t.Errorf("%s: compiled without the tool operation", c.name)
				}
				if mt, ok := conn.MCPTool("listissues"); !ok || mt.Name != "listIssues" || mt.SHA256 == "" {
					t.Errorf("%s: MCPTool(listissues) = %+v", c.name, mt)
				}
				if _, _, err := conn.Match("POST", "/"); !warden.IsCode(err, warden.CodeUnknownOperation) {
					t.Errorf("%s: an MCP connector matched an HTTP request: %v", c.name, err)
				}
			}
		}
		we, isWE := err.(*warden.Error)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.field != "" && (err == nil || !isWE || we.Field != c.field):
			t.Errorf("%s: err = %v, want field %s", c.name, err, c.field)
		}
	}
}

func TestToolPin(t *testing.T) {
	a, _ := ToolPin("t", "d", map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "integer", "minimum": 1}}})
	b, _ := ToolPin("t", "d", map[string]any{"properties": map[string]any{"x": map[string]any{"minimum": 1.0, "type": "integer"}}, "type": "object"})
	if a != b || len(a) != 64 {
		t.Fatalf("equal definitions pin differently: %s %s", a, b)
	}
	for _, other := range [][3]any{{"t2", "d", nil}, {"t", "d2", nil}, {"t", "d", map[string]any{"type": "object"}}} {
		c, _ := ToolPin(other[0].(string), other[1].(string), other[2])
		if c == a {
			t.Errorf("%v pins like the original", other)
		}
	}
}

func TestToolOperationID(t *testing.T) {
	for in, want := range map[string]string{"create_issue": "create_issue", "createIssue": "createissue", "get file/contents": "get_file_contents", "a.b-c": "a.b-c", "_x": "x"} {
		if got, err := ToolOperationID(in); err != nil || got != want {
			t.Errorf("ToolOperationID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ToolOperationID("!!!"); err == nil {
		t.Error("a name without letters or digits gave an operation id")
	}
	yes := true
	if ToolClass(true, nil) != "read" || ToolClass(false, new(bool)) != "write" || ToolClass(false, &yes) != "delete" {
		t.Error("ToolClass maps annotations wrongly")
	}
}
