package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warden/apitype"
	"warden/client"
	"warden/internal/connector"
	"warden/internal/wardentest"
)

// runCLI runs a command through run() and returns stdout and stderr.
func runCLI(env map[string]string, stdin string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestConnectorCommands(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	env := map[string]string{"WARDEN_ADDR": s.URL, "WARDEN_TOKEN": s.RootToken}
	ctx := context.Background()

	// catalog: every built-in entry, then one entry's operations.
	out, _, err := runCLI(env, "", "connector", "catalog", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var cat apitype.CatalogList
	if err := json.Unmarshal([]byte(out), &cat); err != nil || len(cat.Connectors) < 15 {
		t.Fatalf("catalog: %d entries, %v\n%s", len(cat.Connectors), err, out)
	}
	out, _, err = runCLI(env, "", "connector", "catalog", "gmail")
	if err != nil || !strings.Contains(out, "gmail:messages.send") || !strings.Contains(out, "/gmail/v1/users/{userId}/messages/send") {
		t.Fatalf("catalog gmail: %v\n%s", err, out)
	}
	if _, _, err := runCLI(env, "", "connector", "catalog", "nope"); err == nil {
		t.Fatal("catalog of an unknown entry succeeded")
	}

	// apply -f DIR: a full document, a from_catalog one, and a broken one.
	// The good ones are in force; the broken one is reported and the exit
	// code says so.
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("crm.yaml", `apiVersion: warden/v1
kind: Connector
name: crm
base_url: https://crm.example.com/api
auth: {type: header, name: X-Api-Key}
operations:
  - {id: contacts.list, method: GET, path: /contacts, class: read}
  - {id: contacts.delete, method: DELETE, path: "/contacts/{id}", class: delete}
`)
	write("github.json", `{"apiVersion":"warden/v1","kind":"Connector","name":"gh","from_catalog":"github"}`)
	write("broken.yml", `apiVersion: warden/v1
kind: Connector
name: broken
base_url: https://x.example.com
operations:
  - {id: a, method: GET, path: "/a/../b", class: read}
`)
	write("notes.txt", "not a connector")
	out, errOut, err := runCLI(env, "", "connector", "apply", "-f", dir)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, "1 of 3") {
		t.Fatalf("apply: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	if !strings.Contains(errOut, "broken.yml") || !strings.Contains(errOut, "operations[0].path") {
		t.Errorf("apply stderr must name the file and the field: %s", errOut)
	}
	if !strings.Contains(out, "connector crm version 1 (2 operations)") || !strings.Contains(out, "connector gh version 1") {
		t.Errorf("apply stdout: %s", out)
	}
	list, err := s.Root.ListConnectors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, k := range list.Connectors {
		got[k.Name] = len(k.Operations)
	}
	ghCat, _ := connectorFromCatalog(t, "github")
	if len(got) != 2 || got["crm"] != 2 || got["gh"] != ghCat {
		t.Fatalf("in force: %v (github catalog has %d operations)", got, ghCat)
	}

	// list, get (document as stored, and the compiled summary).
	out, _, err = runCLI(env, "", "connector", "list")
	if err != nil || !strings.Contains(out, "crm") || !strings.Contains(out, "https://crm.example.com/api") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = runCLI(env, "", "connector", "get", "gh")
	if err != nil || out != `{"apiVersion":"warden/v1","kind":"Connector","name":"gh","from_catalog":"github"}` {
		t.Fatalf("get document: %v\n%q", err, out)
	}
	out, _, err = runCLI(env, "", "connector", "get", "crm", "-o", "json")
	var sum apitype.Connector
	if err != nil || json.Unmarshal([]byte(out), &sum) != nil || sum.Auth != "header" || len(sum.Operations) != 2 || sum.Operations[1].Action != "crm:contacts.delete" {
		t.Fatalf("get -o json: %v\n%s", err, out)
	}

	// Re-applying a file bumps the version.
	out, _, err = runCLI(env, "", "connector", "apply", "-f", filepath.Join(dir, "crm.yaml"))
	if err != nil || !strings.Contains(out, "version 2") {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}

	// import prints a document (warnings on stderr) that the server accepts.
	spec := filepath.Join("..", "..", "internal", "connector", "testdata", "petstore.yaml")
	out, errOut, err = runCLI(env, "", "connector", "import", spec, "--name", "petstore")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "warning: GET /files/{name}.json skipped") {
		t.Errorf("import warnings: %s", errOut)
	}
	doc, err := connector.Parse([]byte(out), "application/yaml")
	if err != nil {
		t.Fatalf("import output does not parse: %v\n%s", err, out)
	}
	if doc.Name != "petstore" || doc.BaseURL != "https://eu.petstore.example.com/v1" || len(doc.Operations) != 9 {
		t.Errorf("import: %s %s %d operations", doc.Name, doc.BaseURL, len(doc.Operations))
	}
	if c, err := s.Root.Catalog(ctx); err != nil || len(c.Connectors) != len(cat.Connectors) {
		t.Fatalf("SDK catalog: %v", err)
	}
	if _, err := s.Root.GetConnector(ctx, "petstore"); !isStatus(err, 404) {
		t.Fatalf("import without --apply must not create the connector: %v", err)
	}

	// -o json from stdin, with a base URL override.
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(env, string(data), "connector", "import", "-", "--name", "pets2", "-o", "json", "--base-url", "https://pets.internal.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if doc, err = connector.Parse([]byte(out), "application/json"); err != nil || doc.BaseURL != "https://pets.internal.example.com" {
		t.Fatalf("import -o json: %v\n%s", err, out)
	}

	// --apply puts it in force.
	out, _, err = runCLI(env, "", "connector", "import", spec, "--name", "petstore", "--apply")
	if err != nil || !strings.Contains(out, "connector petstore version 1 (9 operations)") {
		t.Fatalf("import --apply: %v\n%s", err, out)
	}
	pet, err := s.Root.GetConnector(ctx, "petstore")
	if err != nil || pet.Auth != "oauth2" || len(pet.Operations) != 9 {
		t.Fatalf("petstore on the server: %+v %v", pet, err)
	}

	// Refusals: no name, an invalid spec, a missing token.
	if _, _, err := runCLI(env, "", "connector", "import", spec); err == nil {
		t.Error("import without --name succeeded")
	}
	bad := filepath.Join(dir, "swagger.yaml")
	write("swagger.yaml", "swagger: '2.0'\npaths: {}\n")
	if _, _, err := runCLI(env, "", "connector", "import", bad, "--name", "old"); err == nil || !strings.Contains(err.Error(), "Swagger 2.0") {
		t.Errorf("import of Swagger 2.0: %v", err)
	}
	if _, _, err := runCLI(map[string]string{"WARDEN_ADDR": s.URL}, "", "connector", "list"); err == nil || !strings.Contains(err.Error(), "WARDEN_TOKEN") {
		t.Errorf("list without a token: %v", err)
	}

	// delete, then it is gone; deleting again is not_found.
	out, _, err = runCLI(env, "", "connector", "delete", "crm")
	if err != nil || !strings.Contains(out, "deleted crm") {
		t.Fatalf("delete: %v %s", err, out)
	}
	if _, err := s.Root.GetConnector(ctx, "crm"); !isStatus(err, 404) {
		t.Fatalf("after delete: %v", err)
	}
	if _, _, err := runCLI(env, "", "connector", "delete", "crm"); !isStatus(err, 404) {
		t.Fatalf("second delete: %v", err)
	}
}

func isStatus(err error, status int) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Status == status
}

func connectorFromCatalog(t *testing.T, name string) (int, *connector.Document) {
	t.Helper()
	cat, err := connector.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := cat.Get(name)
	if !ok {
		t.Fatalf("no catalog entry %s", name)
	}
	return len(d.Operations), d
}
