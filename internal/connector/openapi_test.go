package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"warden"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// importFile imports a testdata spec and compares the document (with the
// warnings as comments) to its golden file.
func importFile(t *testing.T, file, name string, o ImportOptions) (*Document, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	doc, warns, err := ImportOpenAPI(data, name, o)
	if err != nil {
		t.Fatalf("ImportOpenAPI(%s): %v (warnings %q)", file, err, warns)
	}
	var got bytes.Buffer
	for _, w := range warns {
		fmt.Fprintf(&got, "# warning: %s\n", w)
	}
	y, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	got.Write(y)
	golden := filepath.Join("testdata", strings.TrimSuffix(file, filepath.Ext(file))+".connector.yaml")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestImportOpenAPI -update)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("import of %s differs from %s (rerun with -update if intended):\n%s", file, golden, got.String())
	}
	// The output is a document the server accepts as it is.
	parsed, err := Parse(y, "application/yaml")
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	if _, err := Compile(parsed, name); err != nil {
		t.Fatalf("output does not compile: %v", err)
	}
	return doc, warns
}

func opByID(t *testing.T, d *Document, id string) Operation {
	t.Helper()
	for _, o := range d.Operations {
		if o.ID == id {
			return o
		}
	}
	t.Fatalf("no operation %q in %v", id, opIDs(d))
	return Operation{}
}

func opIDs(d *Document) []string {
	var out []string
	for _, o := range d.Operations {
		out = append(out, o.ID)
	}
	return out
}

func hasWarning(warns []string, parts ...string) bool {
	for _, w := range warns {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(w, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestImportOpenAPIPetstore(t *testing.T) {
	d, warns := importFile(t, "petstore.yaml", "petstore", ImportOptions{})
	if d.BaseURL != "https://eu.petstore.example.com/v1" {
		t.Errorf("base_url %q: servers[0] with its variables' defaults, no trailing slash", d.BaseURL)
	}
	if d.Auth.Type != "oauth2" {
		t.Errorf("auth %+v: the global requirement names petstore_auth (oauth2)", d.Auth)
	}
	want := []string{"get.store.inventory", "place-order", "list_pets", "create_pets", "get_pet_photo", "show_pet_by_id", "update_pet", "delete_pet", "transfer_pet"}
	if got := opIDs(d); !sameSet(got, want) {
		t.Errorf("operations %v, want %v", got, want)
	}
	list := opByID(t, d, "list_pets")
	if list.Method != "GET" || list.Path != "/pets" || list.Class != "read" || list.Description != "List all pets" {
		t.Errorf("list_pets: %+v", list)
	}
	if !reflect.DeepEqual(list.Query, []string{"limit", "page"}) {
		t.Errorf("list_pets query %v: query parameters only (not the path item's header), $refs resolved", list.Query)
	}
	create := opByID(t, d, "create_pets")
	if create.Class != "write" || create.BodySchema["type"] != "object" || !reflect.DeepEqual(create.BodySchema["required"], []any{"name"}) {
		t.Errorf("create_pets: class %s body %v", create.Class, create.BodySchema)
	}
	upd := opByID(t, d, "update_pet")
	if upd.Description != "Replace a pet." {
		t.Errorf("update_pet description %q: first line of the description when there is no summary", upd.Description)
	}
	allOf, _ := upd.BodySchema["allOf"].([]any)
	if len(allOf) != 2 || allOf[0].(map[string]any)["type"] != "object" {
		t.Errorf("update_pet body: allOf with the $ref inlined, got %v", upd.BodySchema)
	}
	if del := opByID(t, d, "delete_pet"); del.Class != "delete" || del.Path != "/pets/{petId}" || !strings.Contains(del.Description, "deprecated") {
		t.Errorf("delete_pet: %+v", del)
	}
	if tr := opByID(t, d, "transfer_pet"); tr.Class != "admin" {
		t.Errorf("transfer_pet class %s: x-warden-class admin wins over the method", tr.Class)
	}
	if ph := opByID(t, d, "get_pet_photo"); ph.Path != "/pets/{petId}/photos/{photo_id}" {
		t.Errorf("photo path %q: {id} renamed to the shallower path's {petId}, {photo-id} fitted to {photo_id}", ph.Path)
	}
	if o := opByID(t, d, "place-order"); o.BodySchema["type"] != "object" {
		t.Errorf("place-order: a form body's schema is kept: %v", o.BodySchema)
	}
	for _, w := range [][]string{
		{"GET /files/{name}.json skipped", "not the whole segment"},
		{"GET /health/ skipped", "empty segment"},
		{"TRACE /store/inventory skipped"},
		{"servers[0]", "ignoring 1 other"},
		{"imported as /pets/{petId}/photos/{photo_id}", "{id} -> {petId}"},
	} {
		if !hasWarning(warns, w...) {
			t.Errorf("no warning with %q in %q", w, warns)
		}
	}

	// The imported connector governs requests: the router maps them and
	// refuses what it would refuse for any connector.
	c, err := Compile(cloneDoc(d), "petstore")
	if err != nil {
		t.Fatal(err)
	}
	op, params, err := c.Match("GET", "/pets/rex/photos/7")
	if err != nil || op.ID != "get_pet_photo" || params["petId"] != "rex" || params["photo_id"] != "7" {
		t.Errorf("match: %v %v %v", op, params, err)
	}
	if _, _, err := c.Match("GET", "/files/a.json"); !warden.IsCode(err, warden.CodeUnknownOperation) {
		t.Errorf("a skipped path must match nothing, got %v", err)
	}
}

func TestImportOpenAPISecured(t *testing.T) {
	data, err := os.ReadFile("testdata/secured.json")
	if err != nil {
		t.Fatal(err)
	}
	// A plain-http internal server needs the private-network opt-in.
	_, _, err = ImportOpenAPI(data, "billing", ImportOptions{})
	var we *warden.Error
	if !errors.As(err, &we) || we.Field != "base_url" {
		t.Fatalf("http server without allow_private_network: got %v, want a base_url error", err)
	}

	d, warns := importFile(t, "secured.json", "billing", ImportOptions{AllowPrivateNetwork: true})
	if d.Auth.Type != "header" || d.Auth.Name != "X-Api-Key" {
		t.Errorf("auth %+v: the global requirement's scheme, through its $ref", d.Auth)
	}
	if d.BaseURL != "http://billing.internal:8080/api" || !d.AllowPrivateNetwork {
		t.Errorf("base %s private %v", d.BaseURL, d.AllowPrivateNetwork)
	}
	if d.Description != "Imported from an OpenAPI document: Acme Internal Billing 2024-05" {
		t.Errorf("description %q", d.Description)
	}
	classes := map[string]string{}
	for _, o := range d.Operations {
		classes[o.ID] = o.Method + " " + o.Class
	}
	wantClasses := map[string]string{
		"invoices_list": "GET read", "invoices_create": "POST write", "invoices_get": "GET read",
		"invoices_void": "DELETE delete", "invoices_update": "PATCH write", "invoices_refund": "POST admin",
		"post.admin.keys": "POST admin", "head.admin.keys": "HEAD read",
	}
	if !reflect.DeepEqual(classes, wantClasses) {
		t.Errorf("classes %v, want %v", classes, wantClasses)
	}
	create := opByID(t, d, "invoices_create")
	props, _ := create.BodySchema["properties"].(map[string]any)
	items, _ := props["items"].(map[string]any)
	item, _ := items["items"].(map[string]any)
	itemProps, _ := item["properties"].(map[string]any)
	children, _ := itemProps["children"].(map[string]any)
	if itemProps["sku"] == nil || !reflect.DeepEqual(children["items"], map[string]any{}) {
		t.Errorf("recursive LineItem: inlined once, recursion accepts anything; got %v", item)
	}
	if !reflect.DeepEqual(props["currency"], map[string]any{}) {
		t.Errorf("external $ref must not be fetched: %v", props["currency"])
	}
	for _, w := range [][]string{
		{"GET /invoices/{invoice_id} skipped", "same method and path"},
		{"recursive"},
		{"outside the document"},
	} {
		if !hasWarning(warns, w...) {
			t.Errorf("no warning with %q in %q", w, warns)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// spec builds a small JSON OpenAPI document around the given components
// and top-level security.
func spec(components, security string) []byte {
	s := `{"openapi":"3.0.1","info":{"title":"t","version":"1"},"servers":[{"url":"https://api.example.com"}],` +
		`"paths":{"/things":{"get":{"operationId":"listThings"}}}`
	if components != "" {
		s += `,"components":{"securitySchemes":` + components + `}`
	}
	if security != "" {
		s += `,"security":` + security
	}
	return []byte(s + "}")
}

func TestImportOpenAPIAuth(t *testing.T) {
	cases := []struct {
		name       string
		schemes    string
		security   string
		want       Auth
		wantWarnOn string
	}{
		{"none declared", "", "", Auth{Type: "none"}, "no security scheme"},
		{"http bearer", `{"b":{"type":"http","scheme":"bearer"}}`, "", Auth{Type: "bearer"}, ""},
		{"http Bearer any case", `{"b":{"type":"http","scheme":"Bearer"}}`, "", Auth{Type: "bearer"}, ""},
		{"http basic", `{"b":{"type":"http","scheme":"basic"}}`, "", Auth{Type: "basic"}, ""},
		{"http digest", `{"d":{"type":"http","scheme":"digest"}}`, "", Auth{Type: "none"}, "digest"},
		{"api key header", `{"k":{"type":"apiKey","in":"header","name":"X-API-Key"}}`, "", Auth{Type: "header", Name: "X-API-Key"}, ""},
		{"api key query", `{"k":{"type":"apiKey","in":"query","name":"api_key"}}`, "", Auth{Type: "query", Name: "api_key"}, ""},
		{"api key cookie", `{"k":{"type":"apiKey","in":"cookie","name":"sid"}}`, "", Auth{Type: "none"}, "cookie"},
		{"api key bad name", `{"k":{"type":"apiKey","in":"header","name":"X Key"}}`, "", Auth{Type: "none"}, "not a valid header"},
		{"oauth2", `{"o":{"type":"oauth2","flows":{}}}`, "", Auth{Type: "oauth2"}, ""},
		{"openid connect", `{"o":{"type":"openIdConnect","openIdConnectUrl":"https://id.example.com"}}`, "", Auth{Type: "oauth2"}, ""},
		{"mutual tls", `{"m":{"type":"mutualTLS"}}`, "", Auth{Type: "none"}, "mutualTLS"},
		{"global requirement picks", `{"a":{"type":"http","scheme":"basic"},"z":{"type":"apiKey","in":"header","name":"X-Z"}}`, `[{"z":[]}]`, Auth{Type: "header", Name: "X-Z"}, ""},
		{"optional auth skipped", `{"a":{"type":"http","scheme":"basic"},"z":{"type":"http","scheme":"bearer"}}`, `[{}, {"z":[]}]`, Auth{Type: "bearer"}, ""},
		{"several without requirement", `{"a":{"type":"http","scheme":"basic"},"z":{"type":"http","scheme":"bearer"}}`, "", Auth{Type: "basic"}, "several security schemes"},
		{"combined requirement", `{"a":{"type":"http","scheme":"basic"},"b":{"type":"apiKey","in":"header","name":"X-B"}}`, `[{"a":[],"b":[]}]`, Auth{Type: "basic"}, "only a is injected"},
		{"dangling ref", `{"a":{"$ref":"#/components/securitySchemes/missing"}}`, "", Auth{Type: "none"}, "not a local reference that resolves"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, warns, err := ImportOpenAPI(spec(tc.schemes, tc.security), "svc", ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *d.Auth != tc.want {
				t.Errorf("auth %+v, want %+v", *d.Auth, tc.want)
			}
			if tc.wantWarnOn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings %q", warns)
			}
			if tc.wantWarnOn != "" && !hasWarning(warns, tc.wantWarnOn) {
				t.Errorf("warnings %q lack %q", warns, tc.wantWarnOn)
			}
		})
	}
}

func TestImportOpenAPIRefusals(t *testing.T) {
	const head = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\nservers: [{url: 'https://api.example.com'}]\n"
	deep := "openapi: 3.1.0\nx: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n"
	cases := []struct {
		name  string
		data  string
		docNm string
		opts  ImportOptions
		code  warden.Code
		field string
	}{
		{"bad name", head + "paths: {/a: {get: {}}}", "Bad.Name", ImportOptions{}, warden.CodeInvalid, "name"},
		{"too large", "openapi: 3.1.0\nx: '" + strings.Repeat("a", MaxOpenAPISize) + "'\n", "svc", ImportOptions{}, warden.CodeTooLarge, ""},
		{"yaml alias", head + "x: &a {k: v}\ny: *a\npaths: {/a: {get: {}}}", "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"deep nesting", deep, "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"not yaml", "openapi: [", "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"not a mapping", "- a\n- b\n", "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"empty", "", "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"json trailing data", `{"openapi":"3.1.0"} {}`, "svc", ImportOptions{}, warden.CodeInvalid, ""},
		{"swagger 2", "swagger: '2.0'\npaths: {}", "svc", ImportOptions{}, warden.CodeInvalid, "swagger"},
		{"openapi 4", "openapi: 4.0.0\npaths: {}", "svc", ImportOptions{}, warden.CodeInvalid, "openapi"},
		{"no servers", "openapi: 3.0.0\npaths: {/a: {get: {}}}", "svc", ImportOptions{}, warden.CodeInvalid, "servers"},
		{"relative server", "openapi: 3.0.0\nservers: [{url: /api}]\npaths: {/a: {get: {}}}", "svc", ImportOptions{}, warden.CodeInvalid, "servers"},
		{"server variable without default", "openapi: 3.0.0\nservers: [{url: 'https://{tenant}.example.com'}]\npaths: {/a: {get: {}}}", "svc", ImportOptions{}, warden.CodeInvalid, "servers"},
		{"base url override is validated", head + "paths: {/a: {get: {}}}", "svc", ImportOptions{BaseURL: "ftp://x"}, warden.CodeInvalid, "base_url"},
		{"no paths", head, "svc", ImportOptions{}, warden.CodeInvalid, "paths"},
		{"nothing importable", head + "paths: {'/a/{b}.json': {get: {}}, /c/: {post: {}}}", "svc", ImportOptions{}, warden.CodeInvalid, "paths"},
		{"bad x-warden-class", head + "paths: {/a: {post: {x-warden-class: superuser}}}", "svc", ImportOptions{}, warden.CodeInvalid, "paths./a.post.x-warden-class"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _, err := ImportOpenAPI([]byte(tc.data), tc.docNm, tc.opts)
			var we *warden.Error
			if !errors.As(err, &we) {
				t.Fatalf("got document %v, error %v; want a *warden.Error", d, err)
			}
			if we.Code != tc.code || (tc.field != "" && we.Field != tc.field) {
				t.Fatalf("got %s field %q (%v), want %s field %q", we.Code, we.Field, err, tc.code, tc.field)
			}
		})
	}
}

func TestImportOpenAPIBaseURLOption(t *testing.T) {
	data := []byte("openapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers: [{url: /api}]\npaths: {/a: {get: {operationId: getA}}}")
	d, _, err := ImportOpenAPI(data, "svc", ImportOptions{BaseURL: "https://internal.example.com/api/"})
	if err != nil {
		t.Fatal(err)
	}
	if d.BaseURL != "https://internal.example.com/api" || d.Operations[0].ID != "get_a" {
		t.Fatalf("base %q ops %v", d.BaseURL, opIDs(d))
	}
}

// References that fan out cannot blow a small document up into a huge
// schema: the body schema is left out once it passes the node budget.
func TestImportOpenAPIRefFanOut(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"openapi":"3.1.0","servers":[{"url":"https://x.example.com"}],"paths":{"/a":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/S0"}}}}}}},"components":{"schemas":{`)
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"S%d":{"type":"object","properties":{"a":{"$ref":"#/components/schemas/S%d"},"b":{"$ref":"#/components/schemas/S%d"}}}`, i, i+1, i+1)
	}
	b.WriteString(`,"S40":{"type":"string"}}}}`)
	d, warns, err := ImportOpenAPI([]byte(b.String()), "fan", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Operations[0].BodySchema != nil || !hasWarning(warns, "beyond") {
		t.Fatalf("body schema kept (%d keys) or no warning: %q", len(d.Operations[0].BodySchema), warns)
	}
}

func TestSanitiseID(t *testing.T) {
	for in, want := range map[string]string{
		"listPets":               "list_pets",
		"getUserByID":            "get_user_by_id",
		"Invoices_List":          "invoices_list",
		"repos/get-content":      "repos_get-content",
		"  spaced  out ":         "spaced_out",
		"__init__":               "init",
		"ünïcode":                "n_code",
		"...":                    "",
		"a.b.c":                  "a.b.c",
		strings.Repeat("x", 300): strings.Repeat("x", 120),
	} {
		if got := sanitiseID(in); got != want {
			t.Errorf("sanitiseID(%q) = %q, want %q", in, got, want)
		}
		if got := sanitiseID(in); got != "" && !opIDRE.MatchString(got) {
			t.Errorf("sanitiseID(%q) = %q does not fit the id pattern", in, got)
		}
	}
}

// FuzzImportOpenAPI: any input either fails with a *warden.Error or gives a
// document that compiles and survives a YAML and a JSON round trip.
func FuzzImportOpenAPI(f *testing.F) {
	for _, p := range []string{"testdata/petstore.yaml", "testdata/secured.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(spec(`{"k":{"type":"apiKey","in":"query","name":"key"}}`, `[{"k":[]}]`))
	f.Add([]byte("openapi: 3.0.0\nservers: [{url: 'https://{h}.x.io', variables: {h: {default: a}}}]\npaths: {'/{a-b}/{c}': {get: {operationId: 'x y'}}, '/{c}/z': {get: {}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, _, err := ImportOpenAPI(data, "fuzz", ImportOptions{AllowPrivateNetwork: true})
		if err != nil {
			var we *warden.Error
			if !errors.As(err, &we) {
				t.Fatalf("error is not a *warden.Error: %v", err)
			}
			return
		}
		if _, err := Compile(cloneDoc(d), "fuzz"); err != nil {
			t.Fatalf("imported document does not compile: %v", err)
		}
		y, err := yaml.Marshal(d)
		if err != nil {
			t.Fatalf("yaml: %v", err)
		}
		if _, err := Parse(y, "application/yaml"); err != nil {
			t.Fatalf("YAML output does not parse: %v\n%s", err, y)
		}
		j, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("json: %v", err)
		}
		pd, err := Parse(j, "application/json")
		if err != nil {
			t.Fatalf("JSON output does not parse: %v\n%s", err, j)
		}
		if _, err := Compile(pd, "fuzz"); err != nil {
			t.Fatalf("JSON round trip does not compile: %v", err)
		}
	})
}
