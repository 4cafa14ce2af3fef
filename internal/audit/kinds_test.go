package audit_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"warden/internal/audit"
)

// Kinds lists every Kind constant event.go declares: a kind added there
// must be added to Kinds too, or sinks could not select it.
func TestKindsListsEveryKindConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Kind") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					declared = append(declared, v)
				}
			}
		}
	}
	got := audit.Kinds()
	slices.Sort(declared)
	slices.Sort(got)
	if len(declared) == 0 || !slices.Equal(declared, got) {
		t.Fatalf("event.go declares kinds %v; Kinds returns %v", declared, got)
	}
}
