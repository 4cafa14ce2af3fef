package connector

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"warden"
)

// The catalog must cover at least these services (issue 5); a rename or a
// lost file fails here rather than in a user's from_catalog.
var requiredCatalog = []string{
	"github", "gitlab", "slack", "gmail", "google-calendar", "microsoft-graph-mail", "jira",
	"linear", "notion", "salesforce", "hubspot", "stripe", "twilio", "sendgrid", "openai",
}

// Operation ids are lowercase dotted words (messages.send, issues.comments.create).
var catalogOpID = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)

func loadCatalog(t *testing.T) *Catalog {
	t.Helper()
	cat, err := LoadCatalog()
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	return cat
}

func TestCatalogEntries(t *testing.T) {
	cat := loadCatalog(t)
	names := cat.Names()
	if len(names) < 15 {
		t.Fatalf("catalog has %d connectors, want at least 15", len(names))
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, n := range requiredCatalog {
		if !have[n] {
			t.Errorf("catalog lacks %s", n)
		}
	}
	files, err := fs.Glob(catalogFS, "catalog/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(names) {
		t.Errorf("catalog directory has %d files but %d connectors loaded (every file must be a .yaml connector)", len(files), len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			d, ok := cat.Get(name)
			if !ok {
				t.Fatal("Get failed for a listed name")
			}
			if len(d.Description) < 20 {
				t.Errorf("description %q is too short to tell a user what this is", d.Description)
			}
			u, err := url.Parse(d.BaseURL)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				t.Errorf("base_url %q must be an absolute https URL", d.BaseURL)
			}
			if d.AllowPrivateNetwork {
				t.Error("catalog entries must not allow private networks")
			}
			if d.Auth == nil || d.Auth.Type == "none" || d.Auth.Type == "" {
				t.Errorf("auth %+v: every catalog service authenticates", d.Auth)
			}
			min := 5
			if name == "linear" { // one GraphQL endpoint
				min = 1
			}
			if len(d.Operations) < min {
				t.Errorf("%d operations, want at least %d", len(d.Operations), min)
			}
			pairs := map[string]string{}
			for _, op := range d.Operations {
				if !catalogOpID.MatchString(op.ID) {
					t.Errorf("operation id %q is not lowercase dotted words", op.ID)
				}
				if strings.TrimSpace(op.Description) == "" {
					t.Errorf("operation %s has no description", op.ID)
				}
				if op.Method != strings.ToUpper(op.Method) {
					t.Errorf("operation %s: method %q is not upper case", op.ID, op.Method)
				}
				key := op.Method + " " + op.Path
				if prev, dup := pairs[key]; dup {
					t.Errorf("operations %s and %s share %s", prev, op.ID, key)
				}
				pairs[key] = op.ID
				// Honest classes: a DELETE never passes as a read or write.
				if op.Method == "DELETE" && op.Class != "delete" && op.Class != "admin" {
					t.Errorf("operation %s is a DELETE classed %s", op.ID, op.Class)
				}
				if (op.Method == "GET" || op.Method == "HEAD") && op.Class != "read" {
					t.Errorf("operation %s is a %s classed %s", op.ID, op.Method, op.Class)
				}
			}
			// Compile again (LoadCatalog did): the compiled router must map
			// every operation's own template back to that operation.
			c, err := Compile(d, "")
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			for _, op := range c.Operations() {
				params := map[string]string{}
				for _, p := range op.PathParams() {
					params[p] = "v-" + strings.ToLower(p)
				}
				path, err := op.BuildPath(params)
				if err != nil {
					t.Fatalf("%s: BuildPath: %v", op.ID, err)
				}
				got, gotParams, err := c.Match(op.Method, path)
				if err != nil {
					t.Fatalf("%s: Match(%s %s): %v", op.ID, op.Method, path, err)
				}
				if got.ID != op.ID {
					t.Errorf("%s %s matched %s, want %s", op.Method, path, got.ID, op.ID)
				}
				for k, v := range params {
					if gotParams[k] != v {
						t.Errorf("%s: resource.%s = %q, want %q", op.ID, k, gotParams[k], v)
					}
				}
			}
		})
	}
}

// A user's connector built from a catalog entry gets the catalog's
// operations and its own name, base URL, auth and limits.
func TestCatalogInstantiate(t *testing.T) {
	cat := loadCatalog(t)
	d, err := Parse([]byte(`apiVersion: warden/v1
kind: Connector
name: acme-jira
from_catalog: jira
base_url: https://acme.atlassian.net
timeout: 5s
`), "application/yaml")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := cat.Instantiate(d)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(inst, "acme-jira")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "acme-jira" || c.Base.String() != "https://acme.atlassian.net" || c.Timeout.String() != "5s" || c.Doc.Auth.Type != "basic" {
		t.Fatalf("instantiated: name %s base %s timeout %s auth %s", c.Name, c.Base, c.Timeout, c.Doc.Auth.Type)
	}
	op, params, err := c.Match("POST", "/rest/api/3/issue/ENG-7/comment")
	if err != nil || op.Action != "acme-jira:issues.comments.create" || params["issueIdOrKey"] != "ENG-7" {
		t.Fatalf("match: %v %+v %v", op, params, err)
	}
	// The catalog itself is not changed by an instantiation.
	orig, _ := cat.Get("jira")
	if orig.Name != "jira" || orig.BaseURL != "https://your-site.atlassian.net" {
		t.Fatalf("catalog entry changed: %s %s", orig.Name, orig.BaseURL)
	}

	// Overriding the auth scheme (Linear with an OAuth token).
	d2 := &Document{APIVersion: "warden/v1", Kind: "Connector", Name: "linear-oauth", FromCatalog: "linear", Auth: &Auth{Type: "bearer"}}
	inst2, err := cat.Instantiate(d2)
	if err != nil {
		t.Fatal(err)
	}
	if inst2.Auth.Type != "bearer" || inst2.BaseURL != "https://api.linear.app" || len(inst2.Operations) != 1 {
		t.Fatalf("linear-oauth: %+v", inst2)
	}

	bad := []struct {
		name  string
		doc   *Document
		field string
	}{
		{"unknown entry", &Document{Name: "x", FromCatalog: "nope"}, "from_catalog"},
		{"own operations", &Document{Name: "x", FromCatalog: "github", Operations: []Operation{{ID: "a", Method: "GET", Path: "/", Class: "read"}}}, "operations"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cat.Instantiate(tc.doc)
			var we *warden.Error
			if !errors.As(err, &we) || we.Code != warden.CodeInvalid || we.Field != tc.field {
				t.Fatalf("got %v, want invalid %s", err, tc.field)
			}
		})
	}
}

// Paths that the catalog's upstreams might read differently are refused on
// a catalog connector as on any other.
func TestCatalogStrictMatching(t *testing.T) {
	cat := loadCatalog(t)
	d, _ := cat.Get("github")
	c, err := Compile(d, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/repos/acme/api/issues/../../evil/x",
		"/repos/acme/api%2Fissues",
		"/repos//acme/api",
		"/repos/acme/api/%2e%2e",
		"/REPOS/acme/api",
		"/repos/acme/api/contents/dir%2Ffile",
		"/repos/acme/api\\issues",
		"/repos/acme/%252e%252e",
	} {
		if op, _, err := c.Match("GET", p); err == nil {
			t.Errorf("GET %s matched %s, want refusal", p, op.ID)
		}
	}
	if op, params, err := c.Match("GET", "/repos/acme/api/contents/README.md"); err != nil || op.ID != "contents.get" || params["path"] != "README.md" {
		t.Errorf("contents.get: %v %v %v", op, params, err)
	}
}

// docs/connectors.md lists the catalog with operation counts; keep it true.
func TestCatalogDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "connectors.md"))
	if err != nil {
		t.Fatal(err)
	}
	cat := loadCatalog(t)
	for _, name := range cat.Names() {
		d, _ := cat.Get(name)
		row := fmt.Sprintf("| `%s` | %d | %s", name, len(d.Operations), d.BaseURL)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/connectors.md lacks the row %q", row)
		}
	}
}
