package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"warden"
)

// MaxOpenAPISize bounds an OpenAPI document given to ImportOpenAPI. Real
// specifications of large services (GitHub's is about 10 MB as JSON) are
// best trimmed to the operations an agent needs before importing.
const MaxOpenAPISize = 8 << 20

const (
	// maxOpenAPIDepth bounds nesting of the decoded document.
	maxOpenAPIDepth = 128
	// maxSchemaNodes bounds one body schema after $ref expansion, so a
	// document whose references fan out (A refers to B twice, B to C twice,
	// ...) cannot expand into an exponential schema.
	maxSchemaNodes = 20000
	// maxRefHops bounds a chain of $ref to $ref.
	maxRefHops = 32
	// maxWarnings bounds the warnings returned for one document.
	maxWarnings = 500
)

// ImportOptions adjust ImportOpenAPI.
type ImportOptions struct {
	// BaseURL replaces the document's servers[0].url (needed when that URL
	// is relative or names a different environment).
	BaseURL string
	// AllowPrivateNetwork is copied into the connector: an internal API on
	// a private address or plain http needs it.
	AllowPrivateNetwork bool
}

var (
	wholeParamRE = regexp.MustCompile(`^\{([^{}]+)\}$`)
	serverVarRE  = regexp.MustCompile(`\{[^{}]*\}`)
	tokenRE      = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	importMethod = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
)

// ImportOpenAPI turns an OpenAPI 3.0 or 3.1 document (YAML or JSON) into a
// connector document named name. What is imported:
//
//   - base_url from servers[0].url (variables take their defaults) unless
//     o.BaseURL is given;
//   - one operation per path and method; its id is the operationId made to
//     fit the id pattern (camelCase becomes snake_case), or method and path
//     when there is none; its class comes from an x-warden-class extension
//     on the operation, else from the method (GET and HEAD read, DELETE
//     delete, the rest write);
//   - the summary as description, query parameter names, and the JSON
//     request body's schema with local $refs inlined;
//   - auth from the security scheme the document requires globally (or its
//     only one): http bearer, http basic, apiKey in a header or the query,
//     oauth2 and openIdConnect.
//
// Operations Warden cannot govern exactly are skipped with a warning, never
// approximated: paths whose parameters are not whole segments (/files/{name}.json),
// paths with empty segments or characters outside a plain segment, TRACE.
// References outside the document are never fetched. The result compiles
// (ImportOpenAPI checks); warnings say what was left out or changed.
func ImportOpenAPI(data []byte, name string, o ImportOptions) (*Document, []string, error) {
	if !ValidName(name) {
		return nil, nil, warden.FieldError("name", "must be 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit")
	}
	if len(data) > MaxOpenAPISize {
		return nil, nil, warden.Errorf(warden.CodeTooLarge, "OpenAPI document larger than %d bytes", MaxOpenAPISize)
	}
	root, err := decodeOpenAPI(data)
	if err != nil {
		return nil, nil, err
	}
	v, _ := root["openapi"].(string)
	if !strings.HasPrefix(v, "3.0") && !strings.HasPrefix(v, "3.1") {
		if _, swagger := root["swagger"]; swagger {
			return nil, nil, warden.FieldError("swagger", "Swagger 2.0 documents are not supported; convert to OpenAPI 3 first")
		}
		return nil, nil, warden.FieldError("openapi", "must be an OpenAPI 3.0 or 3.1 version, not %q", clip(v))
	}
	im := &importer{root: root, router: newRouter(), ids: map[string]bool{}}
	base, err := im.baseURL(o.BaseURL)
	if err != nil {
		return nil, im.warnings, err
	}
	doc := &Document{
		APIVersion:          "warden/v1",
		Kind:                "Connector",
		Name:                name,
		Description:         im.description(),
		BaseURL:             base,
		Auth:                im.auth(),
		AllowPrivateNetwork: o.AllowPrivateNetwork,
	}
	if err := im.operations(doc); err != nil {
		return nil, im.warnings, err
	}
	if _, err := Compile(cloneDoc(doc), name); err != nil {
		return nil, im.warnings, err
	}
	return doc, im.warnings, nil
}

// decodeOpenAPI decodes JSON (a document starting with '{') or YAML into
// generic values with string keys. YAML aliases are refused: a document a
// few kilobytes long could otherwise expand into gigabytes.
func decodeOpenAPI(data []byte) (map[string]any, error) {
	var raw any
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document: %s", cleanErr(err))
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document: trailing data after the JSON object")
		}
	} else {
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document: %s", cleanErr(err))
		}
		if err := checkOpenAPIYAML(&n, 0); err != nil {
			return nil, err
		}
		if err := n.Decode(&raw); err != nil {
			return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document: %s", cleanErr(err))
		}
	}
	v, err := normalise(raw, 0)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document: the top level must be a mapping")
	}
	return m, nil
}

func checkOpenAPIYAML(n *yaml.Node, depth int) error {
	if depth > maxOpenAPIDepth {
		return warden.Errorf(warden.CodeInvalid, "OpenAPI document nests deeper than %d levels", maxOpenAPIDepth)
	}
	if n.Kind == yaml.AliasNode {
		return warden.Errorf(warden.CodeInvalid, "OpenAPI document line %d: YAML aliases are not allowed", n.Line)
	}
	for _, c := range n.Content {
		if err := checkOpenAPIYAML(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// normalise gives every mapping string keys and every scalar a type that
// encodes to both JSON and YAML (integers, finite floats, strings, bools).
func normalise(v any, depth int) (any, error) {
	if depth > maxOpenAPIDepth {
		return nil, warden.Errorf(warden.CodeInvalid, "OpenAPI document nests deeper than %d levels", maxOpenAPIDepth)
	}
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			n, err := normalise(x, depth+1)
			if err != nil {
				return nil, err
			}
			t[k] = n
		}
		return t, nil
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			n, err := normalise(x, depth+1)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = n
		}
		return m, nil
	case []any:
		for i, x := range t {
			n, err := normalise(x, depth+1)
			if err != nil {
				return nil, err
			}
			t[i] = n
		}
		return t, nil
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		if f, err := t.Float64(); err == nil && !math.IsInf(f, 0) {
			return f, nil
		}
		return t.String(), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return strconv.FormatFloat(t, 'g', -1, 64), nil
		}
		return t, nil
	case nil, string, bool, int, int64, uint64:
		return t, nil
	case time.Time:
		return t.Format(time.RFC3339Nano), nil
	default:
		return fmt.Sprint(t), nil
	}
}

type importer struct {
	root     map[string]any
	router   *router
	ids      map[string]bool
	warnings []string
}

func (im *importer) warnf(format string, args ...any) {
	switch {
	case len(im.warnings) < maxWarnings:
		im.warnings = append(im.warnings, fmt.Sprintf(format, args...))
	case len(im.warnings) == maxWarnings:
		im.warnings = append(im.warnings, "further warnings left out")
	}
}

// lookup resolves a local reference ("#/components/schemas/Pet"). Other
// references (files, URLs) are never followed.
func (im *importer) lookup(ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	frag, err := url.PathUnescape(ref[2:])
	if err != nil {
		return nil, false
	}
	var cur any = im.root
	for _, tok := range strings.Split(frag, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// object follows $ref chains to a mapping (parameters, request bodies,
// security schemes, path items); nil when it is not one.
func (im *importer) object(v any, what string) map[string]any {
	for range maxRefHops {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		ref, isRef := m["$ref"].(string)
		if !isRef {
			return m
		}
		target, ok := im.lookup(ref)
		if !ok {
			im.warnf("%s: reference %q is not a local reference that resolves; left out", what, clip(ref))
			return nil
		}
		v = target
	}
	im.warnf("%s: more than %d chained references; left out", what, maxRefHops)
	return nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func (im *importer) description() string {
	info, _ := im.root["info"].(map[string]any)
	title, version := strings.TrimSpace(str(info, "title")), strings.TrimSpace(str(info, "version"))
	d := "Imported from an OpenAPI document"
	if title != "" {
		d += ": " + title
		if version != "" {
			d += " " + version
		}
	}
	return shorten(d, 300)
}

func (im *importer) baseURL(override string) (string, error) {
	if override != "" {
		return strings.TrimRight(override, "/"), nil
	}
	servers, _ := im.root["servers"].([]any)
	if len(servers) == 0 {
		return "", warden.FieldError("servers", "the OpenAPI document names no server; give the base URL")
	}
	s0, _ := servers[0].(map[string]any)
	raw := str(s0, "url")
	if raw == "" {
		return "", warden.FieldError("servers", "servers[0] has no url; give the base URL")
	}
	if len(servers) > 1 {
		im.warnf("servers: using servers[0] (%s) and ignoring %d other server(s)", clip(raw), len(servers)-1)
	}
	vars, _ := s0["variables"].(map[string]any)
	var missing string
	expanded := serverVarRE.ReplaceAllStringFunc(raw, func(m string) string {
		v, _ := vars[m[1:len(m)-1]].(map[string]any)
		def, ok := v["default"].(string)
		if !ok {
			missing = m
			return m
		}
		return def
	})
	if missing != "" {
		return "", warden.FieldError("servers", "servers[0].url variable %s has no default; give the base URL", clip(missing))
	}
	u, err := url.Parse(expanded)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", warden.FieldError("servers", "servers[0].url %q is not an absolute URL; give the base URL", clip(expanded))
	}
	return strings.TrimRight(expanded, "/"), nil
}

// auth maps the security scheme the document requires to a connector auth.
func (im *importer) auth() *Auth {
	comps, _ := im.root["components"].(map[string]any)
	schemes, _ := comps["securitySchemes"].(map[string]any)
	if len(schemes) == 0 {
		im.warnf("auth: the document declares no security scheme; the connector uses auth none")
		return &Auth{Type: "none"}
	}
	names := make([]string, 0, len(schemes))
	for n := range schemes {
		names = append(names, n)
	}
	sort.Strings(names)
	chosen := ""
	reqs, _ := im.root["security"].([]any)
	for _, r := range reqs {
		req, _ := r.(map[string]any)
		keys := make([]string, 0, len(req))
		for k := range req {
			if _, ok := schemes[k]; ok {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		sort.Strings(keys)
		chosen = keys[0]
		if len(keys) > 1 {
			im.warnf("auth: the security requirement combines %s; only %s is injected", strings.Join(keys, " and "), chosen)
		}
		break
	}
	if chosen == "" {
		chosen = names[0]
		if len(names) > 1 {
			im.warnf("auth: several security schemes (%s) and no global requirement naming one; using %s", strings.Join(names, ", "), chosen)
		}
	}
	s := im.object(schemes[chosen], "components.securitySchemes."+chosen)
	if s == nil {
		return &Auth{Type: "none"}
	}
	unsupported := func(why string) *Auth {
		im.warnf("auth: security scheme %s %s; the connector uses auth none, set auth yourself", chosen, why)
		return &Auth{Type: "none"}
	}
	switch str(s, "type") {
	case "http":
		switch strings.ToLower(str(s, "scheme")) {
		case "bearer":
			return &Auth{Type: "bearer"}
		case "basic":
			return &Auth{Type: "basic"}
		default:
			return unsupported(fmt.Sprintf("uses HTTP scheme %q, which Warden does not inject", clip(str(s, "scheme"))))
		}
	case "apiKey":
		name := str(s, "name")
		if !tokenRE.MatchString(name) || len(name) > 128 {
			return unsupported(fmt.Sprintf("names %q, which is not a valid header or parameter name", clip(name)))
		}
		switch str(s, "in") {
		case "header":
			return &Auth{Type: "header", Name: name}
		case "query":
			return &Auth{Type: "query", Name: name}
		default:
			return unsupported(fmt.Sprintf("sends its key in %q (only header and query are injected)", clip(str(s, "in"))))
		}
	case "oauth2", "openIdConnect":
		return &Auth{Type: "oauth2"}
	default:
		return unsupported(fmt.Sprintf("has type %q", clip(str(s, "type"))))
	}
}

// operations adds one operation per importable path and method, in path
// order so the output is stable whatever the input's key order.
func (im *importer) operations(doc *Document) error {
	paths, _ := im.root["paths"].(map[string]any)
	if len(paths) == 0 {
		return warden.FieldError("paths", "the OpenAPI document has no paths to import")
	}
	// Shallow paths first: when two paths name the parameter at one
	// position differently, the shallower one's name is kept
	// (/pets/{petId} over /pets/{id}/photos). The output is in path order.
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool {
		di, dj := strings.Count(keys[i], "/"), strings.Count(keys[j], "/")
		if di != dj {
			return di < dj
		}
		return keys[i] < keys[j]
	})
	type placed struct {
		rank int
		op   Operation
	}
	var out []placed
	skipped := 0
	for _, p := range keys {
		item := im.object(paths[p], "paths."+clip(p))
		if item == nil {
			skipped++
			continue
		}
		segs, why := importTemplate(p)
		if why != "" {
			for _, m := range importMethod {
				if _, ok := item[m]; ok {
					im.warnf("%s %s skipped: %s", strings.ToUpper(m), clip(p), why)
					skipped++
				}
			}
			continue
		}
		shared := im.parameters(item["parameters"], p)
		for rank, m := range importMethod {
			raw, ok := item[m]
			if !ok {
				continue
			}
			method := strings.ToUpper(m)
			where := method + " " + clip(p)
			op, ok := raw.(map[string]any)
			if !ok {
				im.warnf("%s skipped: the operation is not a mapping", where)
				skipped++
				continue
			}
			if method == "TRACE" {
				im.warnf("%s skipped: TRACE is not a method Warden forwards", where)
				skipped++
				continue
			}
			o, err := im.operation(method, p, segs, op, shared)
			if err != nil {
				return err
			}
			if o == nil {
				skipped++
				continue
			}
			out = append(out, placed{rank, *o})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].op.Path != out[j].op.Path {
			return out[i].op.Path < out[j].op.Path
		}
		return out[i].rank < out[j].rank
	})
	for _, pl := range out {
		doc.Operations = append(doc.Operations, pl.op)
	}
	if len(doc.Operations) == 0 {
		return warden.FieldError("paths", "no operation could be imported (%d skipped; see the warnings)", skipped)
	}
	return nil
}

// importTemplate turns an OpenAPI path into template segments, or says why
// it cannot be governed exactly. Parameter names that do not fit Warden's
// ({a-zA-Z_}{a-zA-Z0-9_}*) are rewritten (pet-id -> pet_id).
func importTemplate(p string) ([]segment, string) {
	if !strings.HasPrefix(p, "/") {
		return nil, "the path does not start with '/'"
	}
	if p == "/" {
		return nil, ""
	}
	parts := strings.Split(p[1:], "/")
	segs := make([]segment, 0, len(parts))
	seen := map[string]bool{}
	for _, s := range parts {
		switch {
		case s == "":
			return nil, "it has an empty segment (double or trailing slash), which Warden refuses in request paths"
		case strings.ContainsAny(s, "{}"):
			m := wholeParamRE.FindStringSubmatch(s)
			if m == nil {
				return nil, fmt.Sprintf("segment %q holds a parameter that is not the whole segment", clip(s))
			}
			name := paramName(m[1])
			if seen[name] {
				return nil, fmt.Sprintf("parameter {%s} appears twice", name)
			}
			seen[name] = true
			segs = append(segs, segment{param: name})
		case s == "." || s == ".." || !litSegRE.MatchString(s):
			return nil, fmt.Sprintf("segment %q is not a plain path segment", clip(s))
		default:
			segs = append(segs, segment{literal: s})
		}
	}
	return segs, ""
}

// paramName fits an OpenAPI parameter name to Warden's parameter pattern.
func paramName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '_' || r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

func templateString(segs []segment) string {
	if len(segs) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		if s.param != "" {
			b.WriteString("{" + s.param + "}")
		} else {
			b.WriteString(s.literal)
		}
	}
	return b.String()
}

// unify renames parameters to the names earlier operations gave the same
// position (Warden's router needs one name per position: /pets/{petId} and
// /pets/{id}/photos cannot both stand). It reports false when a rename would
// repeat a name within the path.
func (r *router) unify(method string, segs []segment) ([]segment, []string, bool) {
	out := append([]segment(nil), segs...)
	var renamed []string
	n := r.roots[method]
	for i := range out {
		if n == nil {
			break
		}
		if out[i].param == "" {
			n = n.literals[out[i].literal]
			continue
		}
		if n.param != nil && n.param.pname != out[i].param {
			for j := range out {
				if j != i && out[j].param == n.param.pname {
					return nil, nil, false
				}
			}
			renamed = append(renamed, "{"+out[i].param+"} -> {"+n.param.pname+"}")
			out[i].param = n.param.pname
		}
		n = n.param
	}
	return out, renamed, true
}

func (im *importer) operation(method, p string, segs []segment, op map[string]any, shared []map[string]any) (*Operation, error) {
	where := method + " " + clip(p)
	segs, renamed, ok := im.router.unify(method, segs)
	if !ok {
		im.warnf("%s skipped: its parameters clash with another operation's at the same positions", where)
		return nil, nil
	}
	o := &Operation{Method: method, Path: templateString(segs)}

	if c, present := op["x-warden-class"]; present {
		cs, _ := c.(string)
		if !classes[cs] {
			return nil, warden.FieldError("paths."+clip(p)+"."+strings.ToLower(method)+".x-warden-class", "must be read, write, delete or admin, not %q", clip(fmt.Sprint(c)))
		}
		o.Class = cs
	} else {
		switch method {
		case "GET", "HEAD":
			o.Class = "read"
		case "DELETE":
			o.Class = "delete"
		default:
			o.Class = "write"
		}
	}

	o.ID = im.uniqueID(operationID(str(op, "operationId"), method, segs), where)

	desc := strings.TrimSpace(str(op, "summary"))
	if desc == "" {
		desc, _, _ = strings.Cut(strings.TrimSpace(str(op, "description")), "\n")
	}
	if dep, _ := op["deprecated"].(bool); dep {
		desc = strings.TrimSpace(desc + " (deprecated)")
	}
	o.Description = shorten(desc, 300)

	// Query parameters: the operation's override the path item's by name.
	seen := map[string]bool{}
	for _, prm := range append(im.parameters(op["parameters"], p), shared...) {
		name := str(prm, "name")
		if str(prm, "in") != "query" || name == "" || seen[name] {
			continue
		}
		seen[name] = true
		o.Query = append(o.Query, shorten(name, 128))
	}

	if rb := op["requestBody"]; rb != nil {
		o.BodySchema = im.bodySchema(rb, where)
	}

	full := make([]segment, len(segs))
	copy(full, segs)
	if err := im.router.add(method, full, &Op{Operation: *o}); err != nil {
		im.warnf("%s skipped: %s", where, err.Error())
		delete(im.ids, o.ID)
		return nil, nil
	}
	if o.Path != p {
		msg := fmt.Sprintf("%s imported as %s (parameter names fitted to Warden's pattern", where, o.Path)
		if len(renamed) > 0 {
			msg += " and to other operations at the same position: " + strings.Join(renamed, ", ")
		}
		im.warnf("%s)", msg)
	}
	return o, nil
}

func (im *importer) parameters(v any, p string) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for i, x := range list {
		if m := im.object(x, fmt.Sprintf("paths.%s.parameters[%d]", clip(p), i)); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// operationID fits an operationId to the id pattern (listPets -> list_pets),
// or builds one from the method and path (get.pets.pet_id).
func operationID(raw, method string, segs []segment) string {
	if id := sanitiseID(raw); id != "" {
		return id
	}
	parts := []string{strings.ToLower(method)}
	for _, s := range segs {
		if s.param != "" {
			parts = append(parts, sanitiseID(s.param))
		} else {
			parts = append(parts, sanitiseID(s.literal))
		}
	}
	if len(segs) == 0 {
		parts = append(parts, "root")
	}
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return sanitiseID(strings.Join(keep, "."))
}

func sanitiseID(s string) string {
	var b strings.Builder
	lowerBefore := false
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if lowerBefore {
				b.WriteByte('_')
			}
			b.WriteRune(r + ('a' - 'A'))
			lowerBefore = false
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			lowerBefore = true
		case r == '.' || r == '-':
			b.WriteRune(r)
			lowerBefore = false
		default:
			b.WriteByte('_')
			lowerBefore = false
		}
	}
	out := b.String()
	for strings.Contains(out, "__") {
		out = strings.ReplaceAll(out, "__", "_")
	}
	out = strings.TrimLeft(out, "._-")
	if len(out) > 120 {
		out = out[:120]
	}
	return strings.TrimRight(out, "._-")
}

func (im *importer) uniqueID(id, where string) string {
	if !im.ids[id] {
		im.ids[id] = true
		return id
	}
	for i := 2; ; i++ {
		cand := id + "_" + strconv.Itoa(i)
		if !im.ids[cand] {
			im.ids[cand] = true
			im.warnf("%s: operation id %q is taken; using %q", where, id, cand)
			return cand
		}
	}
}

// bodySchema takes the JSON (or form) request body's schema, local $refs
// inlined. A schema that refers to itself accepts anything at the point of
// recursion; one that expands beyond maxSchemaNodes is left out.
func (im *importer) bodySchema(v any, where string) map[string]any {
	rb := im.object(v, where+" requestBody")
	content, _ := rb["content"].(map[string]any)
	if len(content) == 0 {
		return nil
	}
	var media any
	if m, ok := content["application/json"]; ok {
		media = m
	} else {
		types := make([]string, 0, len(content))
		for t := range content {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			base, _, _ := strings.Cut(t, ";")
			if strings.HasSuffix(base, "+json") || base == "application/json" || base == "application/x-www-form-urlencoded" {
				media = content[t]
				break
			}
		}
	}
	mm, _ := media.(map[string]any)
	if mm == nil || mm["schema"] == nil {
		return nil
	}
	x := &inliner{im: im, budget: maxSchemaNodes, stack: map[string]bool{}}
	s := x.inline(mm["schema"])
	if x.budget < 0 {
		im.warnf("%s: request body schema expands beyond %d nodes; body_schema left out", where, maxSchemaNodes)
		return nil
	}
	if x.cycle {
		im.warnf("%s: request body schema is recursive; the recursion point accepts any value", where)
	}
	if x.external {
		im.warnf("%s: request body schema has references outside the document; they accept any value", where)
	}
	out, _ := s.(map[string]any)
	return out
}

type inliner struct {
	im       *importer
	budget   int
	stack    map[string]bool
	cycle    bool
	external bool
}

func (x *inliner) inline(v any) any {
	x.budget--
	if x.budget < 0 {
		return nil
	}
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			if x.stack[ref] {
				x.cycle = true
				return map[string]any{}
			}
			target, ok := x.im.lookup(ref)
			if !ok {
				x.external = true
				return map[string]any{}
			}
			x.stack[ref] = true
			out := x.inline(target)
			delete(x.stack, ref)
			return out
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = x.inline(e)
			if x.budget < 0 {
				return nil
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = x.inline(e)
			if x.budget < 0 {
				return nil
			}
		}
		return out
	default:
		return t
	}
}

// shorten cuts s to at most n bytes on a rune boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
