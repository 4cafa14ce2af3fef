package pgwire

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"warden"
	"warden/internal/connector"
)

func TestBindArgs(t *testing.T) {
	got, err := bindArgs(&pgproto3.Bind{ParameterFormatCodes: []int16{0, 1, 0}, Parameters: [][]byte{[]byte("42"), {0xde, 0xad}, nil}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != `[42 \xdead <nil>]` {
		t.Fatalf("args %v", got)
	}
	all, err := bindArgs(&pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{1}, {2}}})
	if err != nil || fmt.Sprint(all) != `[\x01 \x02]` {
		t.Fatalf("one format for all: %v %v", all, err)
	}
	if _, err := bindArgs(&pgproto3.Bind{ParameterFormatCodes: []int16{0, 0}, Parameters: [][]byte{{1}, {2}, {3}}}); err == nil {
		t.Fatal("a bad number of format codes was accepted")
	}
}

func TestQueryParams(t *testing.T) {
	if _, _, err := queryParams(map[string]any{"sql": "SELECT 1", "limit": 5}); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("unknown param: %v", err)
	}
	if _, _, err := queryParams(map[string]any{}); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("missing sql: %v", err)
	}
	if _, _, err := queryParams(map[string]any{"sql": "SELECT $1", "args": []any{map[string]any{"a": 1}}}); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("object arg: %v", err)
	}
	sql, args, err := queryParams(map[string]any{"sql": "SELECT $1", "args": []any{float64(3), "x", nil, true}})
	if err != nil || sql != "SELECT $1" || len(args) != 4 {
		t.Fatalf("%q %v %v", sql, args, err)
	}
	if argValue(float64(3)) != int64(3) || argValue(2.5) != 2.5 {
		t.Fatal("argValue: whole numbers become integers, others stay floats")
	}
}

func TestAnalysisCacheBounds(t *testing.T) {
	s := New(Options{AnalysisCacheSize: 3})
	for i := range 10 {
		if _, err := s.analyze(fmt.Sprintf("SELECT %d", i)); err != nil {
			t.Fatal(err)
		}
		if n := len(s.cache.m); n > 3 {
			t.Fatalf("cache holds %d entries, bound 3", n)
		}
	}
	a1, _ := s.analyze("SELECT 9")
	a2, _ := s.analyze("SELECT 9")
	if a1 != a2 {
		t.Fatal("a cached analysis was not reused")
	}
	if _, err := s.analyze("SELEC 1"); err == nil {
		t.Fatal("garbage analysed")
	}
}

// TestCallResourceShared: the calls of one cached statement share its
// resource, so what one connector adds (the text, with audit_text) must
// reach that connector's calls only, and never the shared resource.
func TestCallResourceShared(t *testing.T) {
	compile := func(name string, auditText bool) *connector.Connector {
		doc := fmt.Sprintf("apiVersion: warden/v1\nkind: Connector\nname: %s\ntype: postgres\npostgres: {host: 127.0.0.1, port: 5432, database: x, sslmode: disable, audit_text: %v}\n", name, auditText)
		d, err := connector.Parse([]byte(doc), "application/yaml")
		if err != nil {
			t.Fatal(err)
		}
		c, err := connector.Compile(d, name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	plain, withText := compile("plain", false), compile("texty", true)
	s := New(Options{})
	const sql = "SELECT name FROM crm.customers WHERE id = $1"
	a, err := s.analyze(sql)
	if err != nil {
		t.Fatal(err)
	}
	who := warden.Principal{Kind: warden.PrincipalIdentity, ID: "idn_1"}
	texty, err := newCall(who, withText, a, 0, []any{"1"}, meta{})
	if err != nil {
		t.Fatal(err)
	}
	if texty.Resource["text"] != sql {
		t.Fatalf("audit_text connector: resource text %v", texty.Resource["text"])
	}
	b, _ := s.analyze(sql)
	c1, err := newCall(who, plain, b, 0, []any{"1"}, meta{})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := newCall(who, plain, b, 0, []any{"2"}, meta{})
	if _, leaked := c1.Resource["text"]; leaked {
		t.Fatal("the text recorded for an audit_text connector leaked into another connector's calls")
	}
	if fmt.Sprint(c1.Resource["tables"]) != "[crm.customers]" || c1.Resource["class"] != "select" || c1.Path != c2.Path || c1.Path != texty.Path {
		t.Fatalf("resource %v, paths %s %s %s", c1.Resource, c1.Path, c2.Path, texty.Path)
	}
	if fmt.Sprint(c1.Params["args"]) != "[1]" || fmt.Sprint(c2.Params["args"]) != "[2]" {
		t.Fatalf("params %v %v", c1.Params, c2.Params)
	}
}
