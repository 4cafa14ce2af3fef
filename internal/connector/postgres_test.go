package connector

import (
	"errors"
	"testing"
	"time"

	"warden"
)

func TestCompilePostgres(t *testing.T) {
	doc := `apiVersion: warden/v1
kind: Connector
name: crm-db
type: postgres
postgres: {host: 127.0.0.1, port: 5432, database: crm, sslmode: disable, max_rows: 50, statement_timeout: 5s}
`
	d, err := Parse([]byte(doc), "application/yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(d, "crm-db")
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsPostgres() || c.Postgres().Addr() != "127.0.0.1:5432" || c.Postgres().MaxRows != 50 || c.Timeout != 5*time.Second {
		t.Fatalf("compiled %+v / %+v", c, c.Postgres())
	}
	for _, cl := range PostgresClasses {
		op, ok := c.Operation(cl)
		if !ok || op.Action != "crm-db:"+cl {
			t.Fatalf("operation %s: %+v %v", cl, op, ok)
		}
	}
	if op, _ := c.Operation("delete"); op.Class != "delete" {
		t.Fatalf("delete has class %q", op.Class)
	}
	if _, ok := c.Operation("query"); ok {
		t.Fatal("query is not an operation (it is what /v1/execute runs)")
	}
	if c.Doc.Auth.Type == "none" {
		t.Fatal("the gate must resolve a credential for postgres connectors")
	}

	def, err := Parse([]byte(`{"apiVersion":"warden/v1","kind":"Connector","name":"db","type":"postgres","postgres":{"host":"db.internal","database":"app"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := Compile(def, "")
	if err != nil {
		t.Fatal(err)
	}
	if p := dc.Postgres(); p.Port != 5432 || p.SSLMode != "verify-full" || p.MaxRows != DefaultMaxRows || dc.Timeout != DefaultStatementTimeout {
		t.Fatalf("defaults: %+v timeout %s", p, dc.Timeout)
	}
}

func TestCompilePostgresRejects(t *testing.T) {
	base := func(extra string) string {
		return "apiVersion: warden/v1\nkind: Connector\nname: db\n" + extra
	}
	cases := []struct{ name, doc, field string }{
		{"no spec", base("type: postgres\n"), "postgres"},
		{"spec on http", base("base_url: https://x\npostgres: {host: h, database: d}\noperations: [{id: a, method: GET, path: /, class: read}]\n"), "postgres"},
		{"no host", base("type: postgres\npostgres: {database: d}\n"), "postgres.host"},
		{"bad host", base("type: postgres\npostgres: {host: 'h/../x', database: d}\n"), "postgres.host"},
		{"no database", base("type: postgres\npostgres: {host: h}\n"), "postgres.database"},
		{"bad port", base("type: postgres\npostgres: {host: h, database: d, port: 70000}\n"), "postgres.port"},
		{"bad sslmode", base("type: postgres\npostgres: {host: h, database: d, sslmode: maybe}\n"), "postgres.sslmode"},
		{"bad timeout", base("type: postgres\npostgres: {host: h, database: d, statement_timeout: 2h}\n"), "postgres.statement_timeout"},
		{"bad max rows", base("type: postgres\npostgres: {host: h, database: d, max_rows: -1}\n"), "postgres.max_rows"},
		{"operations", base("type: postgres\npostgres: {host: h, database: d}\noperations: [{id: a, method: GET, path: /, class: read}]\n"), "operations"},
		{"auth", base("type: postgres\npostgres: {host: h, database: d}\nauth: {type: bearer}\n"), "auth"},
		{"base url", base("type: postgres\nbase_url: https://x\npostgres: {host: h, database: d}\n"), "base_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(tc.doc), "application/yaml")
			if err == nil {
				_, err = Compile(d, "db")
			}
			var we *warden.Error
			if err == nil || !errors.As(err, &we) || we.Field != tc.field {
				t.Fatalf("err %v, want a field error on %s", err, tc.field)
			}
		})
	}
}
