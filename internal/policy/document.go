package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"warden"
)

// Document bounds. They are small on purpose: a policy is written by a human,
// and every byte of it is parsed on the admin path.
const (
	// MaxDocumentSize is the largest document Parse accepts (1 MiB).
	MaxDocumentSize = 1 << 20
	// MaxDepth is the deepest nesting of mappings and sequences accepted.
	MaxDepth = 32
	// MaxAliasExpansion bounds the nodes that YAML aliases may expand to in
	// one document, so an alias bomb ("billion laughs") is rejected cheaply.
	MaxAliasExpansion = 10000
)

// APIVersion and Kind are the only values accepted in a policy document.
const (
	APIVersion = "warden/v1"
	Kind       = "Policy"
)

// Content types understood by Parse and Encode.
const (
	ContentTypeYAML = "application/yaml"
	ContentTypeJSON = "application/json"
)

// Document is a parsed, structurally valid policy document. Its fields are
// exactly what the user wrote; Compile checks their meaning.
//
// Round trip: a Document keeps the bytes it was parsed from. Encode returns
// those bytes unchanged (comments and layout included) when asked for the
// format they were written in, and a canonical encoding of the fields
// otherwise.
type Document struct {
	APIVersion  string    `json:"apiVersion" yaml:"apiVersion"`
	Kind        string    `json:"kind" yaml:"kind"`
	Name        string    `json:"name" yaml:"name"`
	Description string    `json:"description,omitempty" yaml:"description,omitempty"`
	Subjects    []Subject `json:"subjects" yaml:"subjects"`
	Rules       []Rule    `json:"rules" yaml:"rules"`

	raw     []byte
	rawType string         // ContentTypeYAML or ContentTypeJSON
	lines   map[string]int // field path -> line in raw, for error messages
}

// Subject says who a policy applies to: one identity (by name or id) or every
// identity a selector matches. Exactly one of the two is set.
type Subject struct {
	Identity string    `json:"identity,omitempty" yaml:"identity,omitempty"`
	Selector *Selector `json:"selector,omitempty" yaml:"selector,omitempty"`
}

// Selector matches identities by attributes; every given field must match
// (labels: every listed label). An empty selector matches every identity.
type Selector struct {
	Type        string            `json:"type,omitempty" yaml:"type,omitempty"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Environment string            `json:"environment,omitempty" yaml:"environment,omitempty"`
	Owner       string            `json:"owner,omitempty" yaml:"owner,omitempty"`
}

// Rule is one rule as written. NotBefore and ExpiresAt are RFC 3339 strings and
// Limit.Per a duration string; Compile parses them.
type Rule struct {
	ID          string     `json:"id" yaml:"id"`
	Effect      string     `json:"effect" yaml:"effect"`
	Actions     []string   `json:"actions" yaml:"actions,flow"`
	When        string     `json:"when,omitempty" yaml:"when,omitempty"`
	Limit       *LimitSpec `json:"limit,omitempty" yaml:"limit,omitempty"`
	NotBefore   string     `json:"not_before,omitempty" yaml:"not_before,omitempty"`
	ExpiresAt   string     `json:"expires_at,omitempty" yaml:"expires_at,omitempty"`
	Description string     `json:"description,omitempty" yaml:"description,omitempty"`
	// Approval tunes a require_approval rule: who may approve, how many
	// distinct approvers, how many uses, for how long.
	Approval *ApprovalSpec `json:"approval,omitempty" yaml:"approval,omitempty"`
}

// ApprovalSpec says how a require_approval rule is approved. Approvers
// lists admin roles (admin, security, approver, auditor, owner) or people
// (the subject of their admin token, e.g. an email address); empty means
// anyone with the approver role. Required distinct approvers must approve
// (default 1, at most 5). Uses is how many identical calls one approval
// covers (default 1, at most 100). TTL is how long the request and the
// approval live (default: the server's approval_ttl). AllowOwner lets the
// identity's own owner approve (off by default: segregation of duties).
type ApprovalSpec struct {
	Approvers  []string `json:"approvers,omitempty" yaml:"approvers,omitempty"`
	Required   int      `json:"required,omitempty" yaml:"required,omitempty"`
	Uses       int      `json:"uses,omitempty" yaml:"uses,omitempty"`
	TTL        string   `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	AllowOwner bool     `json:"allow_owner,omitempty" yaml:"allow_owner,omitempty"`
}

// LimitSpec is a rate limit as written: Count calls per Per, where Per is a Go
// duration ("1h", "90s") or a number of days ("7d").
type LimitSpec struct {
	Count int64  `json:"count" yaml:"count"`
	Per   string `json:"per" yaml:"per"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// ValidName reports whether s is an acceptable policy name: 1 to 128
// characters, lowercase letters, digits, '.', '_' and '-', starting with a
// letter or digit. Names appear in URLs, audit rows and rate-limit keys, so the
// charset leaves nothing to escape.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CheckName applies the rule that the name in the URL and in the document must
// agree: a document without a name takes urlName; a different name is an
// error. urlName itself must be a valid name.
func (d *Document) CheckName(urlName string) error {
	if !ValidName(urlName) {
		return warden.FieldError("name", "policy name %q is not valid: use 1-128 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", urlName)
	}
	if d.Name == "" {
		d.Name = urlName
		return nil
	}
	if d.Name != urlName {
		return warden.FieldError("name", "the document names policy %q but the URL names %q; they must agree", d.Name, urlName)
	}
	return nil
}

// Line returns the line of the given field path (like "rules[2].when") in the
// parsed source, or 0 when unknown (documents built in Go).
func (d *Document) Line(field string) int {
	if d == nil || d.lines == nil {
		return 0
	}
	return d.lines[field]
}

// Encode returns the document in the given content type (YAML or JSON). When
// the document was parsed from that same format, the original bytes are
// returned, so a GET shows what was PUT, comments included. Otherwise the
// canonical encoding of the fields is returned.
func (d *Document) Encode(contentType string) ([]byte, error) {
	ct, err := mediaType(contentType, nil)
	if err != nil {
		return nil, err
	}
	if ct == d.rawType && d.raw != nil {
		return bytes.Clone(d.raw), nil
	}
	if ct == ContentTypeJSON {
		return json.MarshalIndent(d, "", "  ")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "encoding policy document")
	}
	_ = enc.Close()
	return buf.Bytes(), nil
}

// ContentType returns the content type the document was parsed from, or ""
// for a document built in Go.
func (d *Document) ContentType() string { return d.rawType }

// mediaType normalises a Content-Type header to ContentTypeYAML or
// ContentTypeJSON. An empty type is sniffed from data (a leading '{' means
// JSON) when data is given.
func mediaType(contentType string, data []byte) (string, error) {
	if strings.TrimSpace(contentType) == "" {
		if data == nil {
			return ContentTypeYAML, nil
		}
		if t := bytes.TrimLeft(data, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '{' {
			return ContentTypeJSON, nil
		}
		return ContentTypeYAML, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", warden.FieldError("content_type", "cannot parse content type %q", contentType)
	}
	switch mt {
	case "application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml":
		return ContentTypeYAML, nil
	case "application/json":
		return ContentTypeJSON, nil
	}
	return "", warden.FieldError("content_type", "unsupported content type %q: send application/yaml or application/json", mt)
}

// Parse decodes a policy document strictly: unknown keys anywhere, duplicate
// keys, wrong types, a missing or wrong apiVersion/kind, documents over
// MaxDocumentSize, nesting deeper than MaxDepth and YAML aliases expanding
// beyond MaxAliasExpansion nodes are all errors. Errors are *warden.Error with
// Code invalid (too_large for size) naming the field and, for parsed input,
// the line. contentType is a Content-Type value; empty means sniff.
func Parse(data []byte, contentType string) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, &warden.Error{Code: warden.CodeTooLarge, Message: fmt.Sprintf("policy document is %d bytes; the limit is %d (1 MiB)", len(data), MaxDocumentSize)}
	}
	ct, err := mediaType(contentType, data)
	if err != nil {
		return nil, err
	}
	var root *yaml.Node
	if ct == ContentTypeJSON {
		root, err = jsonToNode(data)
	} else {
		root, err = yamlToNode(data)
	}
	if err != nil {
		return nil, err
	}
	d := &docDecoder{lines: map[string]int{}}
	doc, err := d.document(root)
	if err != nil {
		return nil, err
	}
	doc.raw = bytes.Clone(data)
	doc.rawType = ct
	doc.lines = d.lines
	return doc, nil
}

func yamlToNode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, warden.FieldError("", "the policy document is empty")
		}
		return nil, warden.Wrap(err, warden.CodeInvalid, "the policy document is not valid YAML: "+yamlErrText(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, warden.FieldError("", "send exactly one YAML document (found a second one after '---')")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, warden.FieldError("", "the policy document is empty")
		}
		root = root.Content[0]
	}
	if err := checkBounds(root); err != nil {
		return nil, err
	}
	return root, nil
}

// yamlErrText strips the library prefix from a YAML error; the rest names the
// line.
func yamlErrText(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// checkBounds walks the node tree the way a decoder would (following
// aliases), rejecting depth beyond MaxDepth and alias expansion beyond
// MaxAliasExpansion. It stops as soon as a bound is crossed, so it is cheap
// even on a bomb.
func checkBounds(root *yaml.Node) error {
	expanded := 0
	var walk func(n *yaml.Node, depth int, viaAlias bool) error
	walk = func(n *yaml.Node, depth int, viaAlias bool) error {
		if depth > MaxDepth {
			return warden.FieldError("", "line %d: nesting is deeper than %d levels", n.Line, MaxDepth)
		}
		if viaAlias {
			expanded++
			if expanded > MaxAliasExpansion {
				return warden.FieldError("", "line %d: YAML aliases expand to more than %d nodes", n.Line, MaxAliasExpansion)
			}
		}
		switch n.Kind {
		case yaml.AliasNode:
			if n.Alias == nil {
				return warden.FieldError("", "line %d: unknown YAML alias", n.Line)
			}
			return walk(n.Alias, depth, true)
		case yaml.MappingNode, yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				if err := walk(c, depth+1, viaAlias); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root, 0, false)
}

// jsonToNode converts JSON into the same node tree YAML produces, with line
// numbers, so one strict decoder serves both formats.
func jsonToNode(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	lastOff, line := 0, 1
	lineAt := func() int {
		off := int(dec.InputOffset())
		if off > len(data) {
			off = len(data)
		}
		if off > lastOff {
			line += bytes.Count(data[lastOff:off], []byte{'\n'})
			lastOff = off
		}
		return line
	}
	jsonErr := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			l := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte{'\n'})
			return warden.Wrap(err, warden.CodeInvalid, fmt.Sprintf("the policy document is not valid JSON: line %d: %s", l, se.Error()))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return warden.FieldError("", "the policy document is not valid JSON: unexpected end of input")
		}
		return warden.Wrap(err, warden.CodeInvalid, "the policy document is not valid JSON")
	}
	var value func(depth int) (*yaml.Node, error)
	value = func(depth int) (*yaml.Node, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		l := lineAt()
		if depth > MaxDepth {
			return nil, warden.FieldError("", "line %d: nesting is deeper than %d levels", l, MaxDepth)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: l}
				for dec.More() {
					kt, err := dec.Token()
					if err != nil {
						return nil, jsonErr(err)
					}
					k, ok := kt.(string)
					if !ok {
						return nil, warden.FieldError("", "line %d: expected an object key", lineAt())
					}
					n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k, Line: lineAt()})
					v, err := value(depth + 1)
					if err != nil {
						return nil, err
					}
					n.Content = append(n.Content, v)
				}
				if _, err := dec.Token(); err != nil { // '}'
					return nil, jsonErr(err)
				}
				return n, nil
			case '[':
				n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: l}
				for dec.More() {
					v, err := value(depth + 1)
					if err != nil {
						return nil, err
					}
					n.Content = append(n.Content, v)
				}
				if _, err := dec.Token(); err != nil { // ']'
					return nil, jsonErr(err)
				}
				return n, nil
			}
			return nil, warden.FieldError("", "line %d: unexpected %q", l, t.String())
		case string:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Line: l}, nil
		case json.Number:
			tag := "!!float"
			if _, err := strconv.ParseInt(t.String(), 10, 64); err == nil {
				tag = "!!int"
			}
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String(), Line: l}, nil
		case bool:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t), Line: l}, nil
		case nil:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: l}, nil
		}
		return nil, warden.FieldError("", "line %d: unexpected JSON token", l)
	}
	root, err := value(0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, warden.FieldError("", "line %d: unexpected data after the JSON document", lineAt())
	}
	return root, nil
}

// docDecoder decodes the node tree into a Document by hand, so that every
// error names the field path and the line, unknown and duplicate keys are
// rejected at every level, and the decoder needs no reflection.
type docDecoder struct {
	lines map[string]int
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < MaxDepth; i++ {
		n = n.Alias
	}
	return n
}

func fieldErr(field string, n *yaml.Node, format string, args ...any) *warden.Error {
	msg := fmt.Sprintf(format, args...)
	if n != nil && n.Line > 0 {
		msg = fmt.Sprintf("line %d: %s", n.Line, msg)
	}
	return warden.FieldError(field, "%s", msg)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// mapping calls fn for each key of a mapping node, in order, rejecting keys not
// in allowed and duplicates.
func (d *docDecoder) mapping(n *yaml.Node, path string, allowed []string, fn func(key string, v *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		what := path
		if what == "" {
			what = "the document"
		}
		return fieldErr(path, n, "%s must be a mapping", what)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fieldErr(path, k, "keys must be strings")
		}
		key := k.Value
		fp := join(path, key)
		if !contains(allowed, key) {
			return fieldErr(fp, k, "unknown field %q (allowed: %s)", key, strings.Join(allowed, ", "))
		}
		if seen[key] {
			return fieldErr(fp, k, "field %q is given twice", key)
		}
		seen[key] = true
		d.lines[fp] = k.Line
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *docDecoder) str(n *yaml.Node, path string) (string, error) {
	n = resolve(n)
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!binary" {
		return "", fieldErr(path, n, "must be a string")
	}
	return n.Value, nil
}

func (d *docDecoder) strList(n *yaml.Node, path string) ([]string, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(path, n, "must be a list of strings")
	}
	if len(n.Content) == 0 {
		return nil, nil // empty and absent are the same; keeps round trips exact
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		fp := fmt.Sprintf("%s[%d]", path, i)
		s, err := d.str(c, fp)
		if err != nil {
			return nil, err
		}
		d.lines[fp] = resolve(c).Line
		out = append(out, s)
	}
	return out, nil
}

func (d *docDecoder) strMap(n *yaml.Node, path string) (map[string]string, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fieldErr(path, n, "must be a mapping of strings")
	}
	if len(n.Content) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			return nil, fieldErr(path, k, "keys must be strings")
		}
		if _, dup := out[k.Value]; dup {
			return nil, fieldErr(join(path, k.Value), k, "key %q is given twice", k.Value)
		}
		v, err := d.str(n.Content[i+1], join(path, k.Value))
		if err != nil {
			return nil, err
		}
		out[k.Value] = v
	}
	return out, nil
}

func (d *docDecoder) document(root *yaml.Node) (*Document, error) {
	doc := &Document{}
	var sawVersion, sawKind bool
	err := d.mapping(root, "", []string{"apiVersion", "kind", "name", "description", "subjects", "rules"}, func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "apiVersion":
			sawVersion = true
			doc.APIVersion, err = d.str(v, key)
			if err == nil && doc.APIVersion != APIVersion {
				err = fieldErr(key, resolve(v), "apiVersion must be %q, not %q", APIVersion, doc.APIVersion)
			}
		case "kind":
			sawKind = true
			doc.Kind, err = d.str(v, key)
			if err == nil && doc.Kind != Kind {
				err = fieldErr(key, resolve(v), "kind must be %q, not %q", Kind, doc.Kind)
			}
		case "name":
			doc.Name, err = d.str(v, key)
			if err == nil && doc.Name != "" && !ValidName(doc.Name) {
				err = fieldErr(key, resolve(v), "policy name %q is not valid: use 1-128 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", doc.Name)
			}
		case "description":
			doc.Description, err = d.str(v, key)
		case "subjects":
			doc.Subjects, err = d.subjects(v)
		case "rules":
			doc.Rules, err = d.rules(v)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !sawVersion {
		return nil, warden.FieldError("apiVersion", "apiVersion is required and must be %q", APIVersion)
	}
	if !sawKind {
		return nil, warden.FieldError("kind", "kind is required and must be %q", Kind)
	}
	return doc, nil
}

func (d *docDecoder) subjects(n *yaml.Node) ([]Subject, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr("subjects", n, "subjects must be a list")
	}
	if len(n.Content) == 0 {
		return nil, nil
	}
	out := make([]Subject, 0, len(n.Content))
	for i, c := range n.Content {
		path := fmt.Sprintf("subjects[%d]", i)
		d.lines[path] = resolve(c).Line
		var s Subject
		err := d.mapping(c, path, []string{"identity", "selector"}, func(key string, v *yaml.Node) error {
			var err error
			switch key {
			case "identity":
				s.Identity, err = d.str(v, join(path, key))
			case "selector":
				s.Selector, err = d.selector(v, join(path, key))
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *docDecoder) selector(n *yaml.Node, path string) (*Selector, error) {
	sel := &Selector{}
	if isNull(resolve(n)) {
		return sel, nil
	}
	err := d.mapping(n, path, []string{"type", "labels", "environment", "owner"}, func(key string, v *yaml.Node) error {
		var err error
		fp := join(path, key)
		switch key {
		case "type":
			sel.Type, err = d.str(v, fp)
		case "labels":
			if sel.Labels, err = d.strMap(v, fp); err != nil {
				return err
			}
			keys := make([]string, 0, len(sel.Labels))
			for k := range sel.Labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !warden.ValidLabelKey(k) {
					return fieldErr(join(fp, k), v, "label key %q can never match an identity: label keys are 1-63 letters, digits, '.', '_', '/' or '-', starting with a letter or digit", k)
				}
			}
		case "environment":
			sel.Environment, err = d.str(v, fp)
		case "owner":
			sel.Owner, err = d.str(v, fp)
		}
		return err
	})
	return sel, err
}

func (d *docDecoder) rules(n *yaml.Node) ([]Rule, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr("rules", n, "rules must be a list")
	}
	if len(n.Content) == 0 {
		return nil, nil
	}
	out := make([]Rule, 0, len(n.Content))
	for i, c := range n.Content {
		path := fmt.Sprintf("rules[%d]", i)
		d.lines[path] = resolve(c).Line
		var r Rule
		err := d.mapping(c, path, []string{"id", "effect", "actions", "when", "limit", "not_before", "expires_at", "description", "approval"}, func(key string, v *yaml.Node) error {
			var err error
			fp := join(path, key)
			switch key {
			case "id":
				r.ID, err = d.str(v, fp)
			case "effect":
				r.Effect, err = d.str(v, fp)
			case "actions":
				r.Actions, err = d.strList(v, fp)
			case "when":
				r.When, err = d.str(v, fp)
			case "limit":
				r.Limit, err = d.limit(v, fp)
			case "not_before":
				r.NotBefore, err = d.str(v, fp)
			case "expires_at":
				r.ExpiresAt, err = d.str(v, fp)
			case "description":
				r.Description, err = d.str(v, fp)
			case "approval":
				r.Approval, err = d.approval(v, fp)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *docDecoder) approval(n *yaml.Node, path string) (*ApprovalSpec, error) {
	if isNull(resolve(n)) {
		return nil, nil
	}
	a := &ApprovalSpec{}
	whole := func(v *yaml.Node, fp string) (int, error) {
		v = resolve(v)
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
			return 0, fieldErr(fp, v, "must be a whole number")
		}
		c, err := strconv.Atoi(v.Value)
		if err != nil {
			return 0, fieldErr(fp, v, "must be a small whole number")
		}
		return c, nil
	}
	err := d.mapping(n, path, []string{"approvers", "required", "uses", "ttl", "allow_owner"}, func(key string, v *yaml.Node) error {
		var err error
		fp := join(path, key)
		switch key {
		case "approvers":
			a.Approvers, err = d.strList(v, fp)
		case "required":
			a.Required, err = whole(v, fp)
		case "uses":
			a.Uses, err = whole(v, fp)
		case "ttl":
			a.TTL, err = d.str(v, fp)
		case "allow_owner":
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				return fieldErr(fp, v, "must be true or false")
			}
			a.AllowOwner = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
		}
		return err
	})
	return a, err
}

func (d *docDecoder) limit(n *yaml.Node, path string) (*LimitSpec, error) {
	if isNull(resolve(n)) {
		return nil, nil
	}
	l := &LimitSpec{}
	err := d.mapping(n, path, []string{"count", "per"}, func(key string, v *yaml.Node) error {
		fp := join(path, key)
		switch key {
		case "count":
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
				return fieldErr(fp, v, "count must be a whole number")
			}
			c, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 64)
			if err != nil {
				return fieldErr(fp, v, "count must be a whole number that fits 64 bits")
			}
			l.Count = c
		case "per":
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || isNull(v) {
				return fieldErr(fp, v, "per must be a duration like \"1h\" or \"7d\"")
			}
			l.Per = v.Value
		}
		return nil
	})
	return l, err
}
