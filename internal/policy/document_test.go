package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"warden"
)

const minimal = `apiVersion: warden/v1
kind: Policy
name: p
subjects:
  - identity: bot
rules:
  - id: r1
    effect: allow
    actions: ["crm:contacts.get"]
`

func TestParseRejects(t *testing.T) {
	deep := "apiVersion: warden/v1\nkind: Policy\nname: p\ndescription: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"
	bomb := `apiVersion: warden/v1
kind: Policy
name: p
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
`
	cases := []struct {
		name, src, ct string
		code          warden.Code
		field, msg    string
	}{
		{"unknown top-level key", minimal + "extra: 1\n", "", warden.CodeInvalid, "extra", "line 10: unknown field"},
		{"unknown rule key", strings.Replace(minimal, "effect: allow", "effect: allow\n    efect: deny", 1), "", warden.CodeInvalid, "rules[0].efect", "line 9"},
		{"unknown selector key", strings.Replace(minimal, "identity: bot", "selector: {kind: x}", 1), "", warden.CodeInvalid, "subjects[0].selector.kind", "line 5"},
		{"selector label key no identity can have", strings.Replace(minimal, "identity: bot", `selector: {labels: {"team=x": y}}`, 1), "", warden.CodeInvalid, "subjects[0].selector.labels.team=x", "can never match"},
		{"unknown limit key", strings.Replace(minimal, "effect: allow", "effect: allow\n    limit: {count: 1, per: 1h, burst: 2}", 1), "", warden.CodeInvalid, "rules[0].limit.burst", "unknown field"},
		{"missing apiVersion", strings.Replace(minimal, "apiVersion: warden/v1\n", "", 1), "", warden.CodeInvalid, "apiVersion", "required"},
		{"wrong apiVersion", strings.Replace(minimal, "warden/v1", "warden/v2", 1), "", warden.CodeInvalid, "apiVersion", "must be"},
		{"missing kind", strings.Replace(minimal, "kind: Policy\n", "", 1), "", warden.CodeInvalid, "kind", "required"},
		{"wrong kind", strings.Replace(minimal, "kind: Policy", "kind: Connector", 1), "", warden.CodeInvalid, "kind", "must be"},
		{"duplicate key", minimal + "name: q\n", "", warden.CodeInvalid, "name", "given twice"},
		{"bad name", strings.Replace(minimal, "name: p", "name: ../etc", 1), "", warden.CodeInvalid, "name", "not valid"},
		{"actions not a list", strings.Replace(minimal, `actions: ["crm:contacts.get"]`, "actions: {a: b}", 1), "", warden.CodeInvalid, "rules[0].actions", "list of strings"},
		{"count not a number", strings.Replace(minimal, "effect: allow", "effect: allow\n    limit: {count: many, per: 1h}", 1), "", warden.CodeInvalid, "rules[0].limit.count", "whole number"},
		{"not yaml", "apiVersion: [", "", warden.CodeInvalid, "", "not valid YAML"},
		{"two documents", minimal + "---\n" + minimal, "", warden.CodeInvalid, "", "exactly one"},
		{"empty", "", ContentTypeYAML, warden.CodeInvalid, "", "empty"},
		{"not a mapping", "- a\n- b\n", "", warden.CodeInvalid, "", "must be a mapping"},
		{"deep nesting", deep, "", warden.CodeInvalid, "", "deeper than"},
		{"alias bomb", bomb, "", warden.CodeInvalid, "", "aliases expand"},
		{"too large", minimal + "description: \"" + strings.Repeat("x", MaxDocumentSize) + "\"\n", "", warden.CodeTooLarge, "", "1 MiB"},
		{"json unknown key", `{"apiVersion":"warden/v1","kind":"Policy","name":"p",` + "\n" + `"subjects":[{"identity":"a","x":1}],"rules":[]}`, ContentTypeJSON, warden.CodeInvalid, "subjects[0].x", "line 2"},
		{"json syntax", "{\"apiVersion\":\n\"warden/v1\",,}", ContentTypeJSON, warden.CodeInvalid, "", "line 2"},
		{"json deep", strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), ContentTypeJSON, warden.CodeInvalid, "", "deeper than"},
		{"json duplicate key", `{"apiVersion":"warden/v1","kind":"Policy","kind":"Policy"}`, ContentTypeJSON, warden.CodeInvalid, "kind", "given twice"},
		{"json trailing data", `{"apiVersion":"warden/v1","kind":"Policy"} {}`, ContentTypeJSON, warden.CodeInvalid, "", "after the JSON"},
		{"unsupported type", minimal, "text/plain", warden.CodeInvalid, "content_type", "unsupported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), tc.ct)
			if err == nil {
				t.Fatal("Parse accepted the document")
			}
			var we *warden.Error
			if !asWarden(err, &we) {
				t.Fatalf("error %T is not *warden.Error: %v", err, err)
			}
			if we.Code != tc.code || we.Field != tc.field || !strings.Contains(we.Message, tc.msg) {
				t.Fatalf("got code=%s field=%q msg=%q; want code=%s field=%q msg containing %q", we.Code, we.Field, we.Message, tc.code, tc.field, tc.msg)
			}
		})
	}
}

func asWarden(err error, we **warden.Error) bool {
	e, ok := err.(*warden.Error)
	*we = e
	return ok
}

func TestParseAcceptsSmallAliasesAndJSON(t *testing.T) {
	src := `apiVersion: warden/v1
kind: Policy
name: aliases
subjects: [{identity: bot}]
rules:
  - id: a
    effect: allow
    actions: &reads ["crm:contacts.get", "crm:contacts.list"]
  - id: b
    effect: deny
    actions: *reads
    not_before: 2026-01-01T00:00:00Z
`
	p := mustPolicy(t, src)
	if got := p.Document().Rules[1].Actions; len(got) != 2 || got[1] != "crm:contacts.list" {
		t.Fatalf("alias not expanded: %v", got)
	}
	if got := p.Document().Rules[1].NotBefore; got != "2026-01-01T00:00:00Z" {
		t.Fatalf("timestamp scalar changed: %q", got)
	}
	js, err := p.Document().Encode(ContentTypeJSON)
	if err != nil {
		t.Fatal(err)
	}
	doc2, err := Parse(js, "application/json; charset=utf-8")
	if err != nil {
		t.Fatalf("canonical JSON does not parse: %v\n%s", err, js)
	}
	if _, err := Compile(doc2); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(p.Document())
	b, _ := json.Marshal(doc2)
	if string(a) != string(b) {
		t.Fatalf("round trip changed the document:\n%s\n%s", a, b)
	}
}

func TestEncodeKeepsOriginalBytes(t *testing.T) {
	src := "# a comment users want back\n" + minimal
	doc, err := Parse([]byte(src), "text/yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := doc.Encode("application/yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != src {
		t.Fatalf("YAML GET differs from PUT:\n%s", out)
	}
	js, err := doc.Encode(ContentTypeJSON)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil || m["name"] != "p" || m["apiVersion"] != "warden/v1" {
		t.Fatalf("canonical JSON wrong: %v %s", err, js)
	}
	// Canonical YAML of a JSON document parses back to the same fields.
	jdoc, err := Parse(js, "")
	if err != nil {
		t.Fatal(err)
	}
	y, err := jdoc.Encode(ContentTypeYAML)
	if err != nil {
		t.Fatal(err)
	}
	ydoc, err := Parse(y, ContentTypeYAML)
	if err != nil {
		t.Fatalf("canonical YAML does not parse: %v\n%s", err, y)
	}
	if fmt.Sprint(ydoc.Rules) != fmt.Sprint(doc.Rules) {
		t.Fatalf("rules changed: %v vs %v", ydoc.Rules, doc.Rules)
	}
}

func TestCheckName(t *testing.T) {
	doc, err := Parse([]byte(strings.Replace(minimal, "name: p\n", "", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.CheckName("Bad Name"); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("invalid URL name accepted: %v", err)
	}
	if err := doc.CheckName("from-url"); err != nil || doc.Name != "from-url" {
		t.Fatalf("nameless document did not take the URL name: %v %q", err, doc.Name)
	}
	doc2, _ := Parse([]byte(minimal), "")
	err = doc2.CheckName("other")
	var we *warden.Error
	if !asWarden(err, &we) || we.Field != "name" || !strings.Contains(we.Message, "must agree") {
		t.Fatalf("mismatched names accepted: %v", err)
	}
	if err := doc2.CheckName("p"); err != nil {
		t.Fatal(err)
	}
}
