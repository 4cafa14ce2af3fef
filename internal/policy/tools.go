package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"warden"
)

// FileResult is the outcome of validating one policy file.
type FileResult struct {
	Path string
	// Name is the policy's name when the file parsed.
	Name string
	// Err is nil for a valid file, else the first problem (a *warden.Error
	// naming the field and line where possible).
	Err error
}

// isPolicyFile reports whether a directory entry is a policy document (YAML or
// JSON) rather than a test file.
func isPolicyFile(name string) bool {
	if isTestFile(name) {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func isTestFile(name string) bool {
	return strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml")
}

func contentTypeFor(path string) string {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return ContentTypeJSON
	}
	return ContentTypeYAML
}

// LoadFile reads, parses and compiles one policy file. A file without a name
// takes its base name (without extension) as the name, as `warden policy
// apply` would send it under that name.
func LoadFile(path string) (*Policy, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeNotFound, "cannot read "+path)
	}
	if fi.Size() > MaxDocumentSize {
		return nil, &warden.Error{Code: warden.CodeTooLarge, Message: fmt.Sprintf("%s is %d bytes; the limit is %d (1 MiB)", path, fi.Size(), MaxDocumentSize)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeNotFound, "cannot read "+path)
	}
	doc, err := Parse(data, contentTypeFor(path))
	if err != nil {
		return nil, err
	}
	if doc.Name == "" {
		base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		if err := doc.CheckName(base); err != nil {
			return nil, warden.FieldError("name", "the document has no name and the file name %q is not a valid policy name", base)
		}
	}
	return Compile(doc)
}

// ValidateFiles parses and compiles each file offline, as PUT would. A path
// that is a directory stands for the policy files in it (*.yaml, *.yml,
// *.json, not *_test.yaml). Two files naming the same policy are an error on
// the second. The results list every file; the error is non-nil (Code
// invalid) when at least one file is invalid, so a CLI can exit non-zero.
func ValidateFiles(paths []string) ([]FileResult, error) {
	var files []string
	var results []FileResult
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			results = append(results, FileResult{Path: p, Err: warden.Wrap(err, warden.CodeNotFound, "cannot read "+p)})
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			results = append(results, FileResult{Path: p, Err: warden.Wrap(err, warden.CodeNotFound, "cannot read directory "+p)})
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && isPolicyFile(e.Name()) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	names := map[string]string{}
	for _, f := range files {
		res := FileResult{Path: f}
		pol, err := LoadFile(f)
		switch {
		case err != nil:
			res.Err = err
		case names[pol.name] != "":
			res.Name = pol.name
			res.Err = warden.FieldError("name", "policy %q is also defined in %s", pol.name, names[pol.name])
		default:
			res.Name = pol.name
			names[pol.name] = f
		}
		results = append(results, res)
	}
	bad := 0
	for _, r := range results {
		if r.Err != nil {
			bad++
		}
	}
	if bad > 0 {
		return results, warden.Errorf(warden.CodeInvalid, "%d of %d policy files are invalid", bad, len(results))
	}
	if len(results) == 0 {
		return results, warden.Errorf(warden.CodeInvalid, "no policy files found")
	}
	return results, nil
}

// ---- test files ----

// testFile is the format of a *_test.yaml file. See docs/policy.md.
type testFile struct {
	// Policies lists policy files relative to the test file; empty means every
	// policy file in the test file's directory.
	Policies   []string                `yaml:"policies"`
	Identities map[string]testIdentity `yaml:"identities"`
	Cases      []testCase              `yaml:"cases"`
}

type testIdentity struct {
	ID          string            `yaml:"id"`
	Name        string            `yaml:"name"`
	Type        string            `yaml:"type"`
	Owner       string            `yaml:"owner"`
	Environment string            `yaml:"environment"`
	Labels      map[string]string `yaml:"labels"`
}

// identityRef is either the key of an entry in identities or an inline
// identity.
type identityRef struct {
	ref    string
	inline *testIdentity
}

func (r *identityRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.ref = n.Value
		return nil
	}
	var id testIdentity
	if err := decodeStrict(n, &id); err != nil {
		return err
	}
	r.inline = &id
	return nil
}

type testRequestInfo struct {
	Time   string `yaml:"time"`
	IP     string `yaml:"ip"`
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
}

type testCase struct {
	Name     string          `yaml:"name"`
	Identity identityRef     `yaml:"identity"`
	Action   string          `yaml:"action"`
	Class    string          `yaml:"class"`
	Resource map[string]any  `yaml:"resource"`
	Params   map[string]any  `yaml:"params"`
	Context  map[string]any  `yaml:"context"`
	Request  testRequestInfo `yaml:"request"`
	Approved bool            `yaml:"approved"`
	DryRun   bool            `yaml:"dry_run"`
	// Calls repeats the request (counting toward limits); the expectation
	// is checked on the last call. Default 1.
	Calls  int        `yaml:"calls"`
	Expect testExpect `yaml:"expect"`
}

type testExpect struct {
	Decision       string `yaml:"decision"`
	Code           string `yaml:"code"`
	Policy         string `yaml:"policy"`
	Rule           string `yaml:"rule"`
	RetryAfter     string `yaml:"retry_after"`
	ReasonContains string `yaml:"reason_contains"`
	// Matched lists "policy/rule" of every matching rule, in order.
	Matched []string `yaml:"matched"`
}

// decodeStrict decodes a YAML node rejecting unknown fields (yaml.v3's
// Node.Decode does not).
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// CaseResult is the outcome of one test case.
type CaseResult struct {
	Name     string
	Passed   bool
	Diffs    []string // "field: want X, got Y", one per mismatch
	Got      Decision
	Duration time.Duration
}

// TestFileResult is the outcome of one test file.
type TestFileResult struct {
	Path  string
	Err   error // the file or its policies could not be loaded; counts as a failure
	Cases []CaseResult
}

// TestReport is the outcome of RunTests.
type TestReport struct {
	Files     []TestFileResult
	PassCount int
	FailCount int // failed cases plus files that could not be loaded
}

// Failed reports whether any case failed or any file could not be loaded.
func (r *TestReport) Failed() bool {
	return r.FailCount > 0
}

// RunTests finds every *_test.yaml (or *_test.yml) file under dir, loads the
// policies it names (by default every policy file in its directory), and runs
// its cases, each against a fresh engine whose clock is the case's
// request.time, so limits and time windows are deterministic. A file whose
// policies do not load fails as a whole. The error is only for a dir that
// cannot be walked or holds no test files.
func RunTests(dir string) (*TestReport, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isTestFile(d.Name()) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInvalid, "cannot read test directory "+dir)
	}
	if len(paths) == 0 {
		return nil, warden.Errorf(warden.CodeInvalid, "no *_test.yaml files under %s", dir)
	}
	sort.Strings(paths)
	rep := &TestReport{}
	for _, p := range paths {
		fr := runTestFile(p)
		if fr.Err != nil {
			rep.FailCount++
		}
		for _, c := range fr.Cases {
			if c.Passed {
				rep.PassCount++
			} else {
				rep.FailCount++
			}
		}
		rep.Files = append(rep.Files, fr)
	}
	return rep, nil
}

func runTestFile(path string) TestFileResult {
	fr := TestFileResult{Path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		fr.Err = err
		return fr
	}
	var tf testFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the test file is empty")
		}
		fr.Err = fmt.Errorf("cannot read test file: %s", yamlErrText(err))
		return fr
	}
	if len(tf.Cases) == 0 {
		fr.Err = errors.New("the test file has no cases")
		return fr
	}
	dir := filepath.Dir(path)
	var files []string
	if len(tf.Policies) > 0 {
		for _, p := range tf.Policies {
			files = append(files, filepath.Join(dir, p))
		}
	} else {
		entries, err := os.ReadDir(dir)
		if err != nil {
			fr.Err = err
			return fr
		}
		for _, e := range entries {
			if !e.IsDir() && isPolicyFile(e.Name()) {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	var pols []*Policy
	for _, f := range files {
		p, err := LoadFile(f)
		if err != nil {
			fr.Err = fmt.Errorf("policy %s: %w", f, err)
			return fr
		}
		pols = append(pols, p)
	}
	for i, c := range tf.Cases {
		fr.Cases = append(fr.Cases, runCase(i, c, &tf, pols))
	}
	return fr
}

func runCase(i int, c testCase, tf *testFile, pols []*Policy) CaseResult {
	res := CaseResult{Name: c.Name}
	if res.Name == "" {
		res.Name = fmt.Sprintf("case %d", i+1)
	}
	fail := func(format string, args ...any) CaseResult {
		res.Diffs = append(res.Diffs, fmt.Sprintf(format, args...))
		return res
	}
	var id testIdentity
	switch {
	case c.Identity.inline != nil:
		id = *c.Identity.inline
	case c.Identity.ref != "":
		known, ok := tf.Identities[c.Identity.ref]
		if !ok {
			return fail("identity %q is not defined under identities", c.Identity.ref)
		}
		id = known
	default:
		return fail("the case has no identity")
	}
	if id.ID == "" && id.Name == "" {
		return fail("the identity needs an id or a name")
	}
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) // a Monday, noon UTC
	if c.Request.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Request.Time)
		if err != nil {
			return fail("request.time %q is not RFC 3339", c.Request.Time)
		}
		now = t
	}
	if c.Expect.Decision == "" {
		return fail("expect.decision is required (allow, deny or require_approval)")
	}
	eng := NewEngine(Options{Now: func() time.Time { return now }})
	eng.Replace(pols)
	req := &Request{
		Identity: Identity{ID: id.ID, Name: id.Name, Type: id.Type, Owner: id.Owner, Environment: id.Environment, Labels: id.Labels},
		Action:   c.Action, Class: c.Class,
		Resource: c.Resource, Params: c.Params, Context: c.Context,
		Time: now, IP: c.Request.IP, Method: c.Request.Method, Path: c.Request.Path,
		Approved: c.Approved, DryRun: c.DryRun,
	}
	calls := max(c.Calls, 1)
	start := time.Now()
	var d Decision
	for range calls {
		d = eng.Decide(context.Background(), req)
	}
	res.Duration = time.Since(start)
	res.Got = d
	diff := func(field, want, got string) {
		if want != "" && want != got {
			res.Diffs = append(res.Diffs, fmt.Sprintf("%s: want %q, got %q", field, want, got))
		}
	}
	diff("decision", c.Expect.Decision, string(d.Effect))
	diff("code", c.Expect.Code, string(d.Code))
	diff("policy", c.Expect.Policy, d.Policy)
	diff("rule", c.Expect.Rule, d.Rule)
	if c.Expect.RetryAfter != "" {
		want, err := time.ParseDuration(c.Expect.RetryAfter)
		if err != nil {
			res.Diffs = append(res.Diffs, fmt.Sprintf("expect.retry_after %q is not a duration", c.Expect.RetryAfter))
		} else if want != d.RetryAfter {
			res.Diffs = append(res.Diffs, fmt.Sprintf("retry_after: want %s, got %s", want, d.RetryAfter))
		}
	}
	if c.Expect.ReasonContains != "" && !strings.Contains(d.Reason, c.Expect.ReasonContains) {
		res.Diffs = append(res.Diffs, fmt.Sprintf("reason: want it to contain %q, got %q", c.Expect.ReasonContains, d.Reason))
	}
	if c.Expect.Matched != nil {
		got := make([]string, 0, len(d.Matched))
		for _, m := range d.Matched {
			got = append(got, m.Policy+"/"+m.Rule)
		}
		if !reflect.DeepEqual(c.Expect.Matched, got) && !(len(c.Expect.Matched) == 0 && len(got) == 0) {
			res.Diffs = append(res.Diffs, fmt.Sprintf("matched: want %v, got %v", c.Expect.Matched, got))
		}
	}
	res.Passed = len(res.Diffs) == 0
	return res
}

// Write prints the report like `opa test`: one line per case, and for each
// failure what was expected, what came back and why.
func (r *TestReport) Write(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Files {
		fmt.Fprintf(&b, "%s:\n", f.Path)
		if f.Err != nil {
			fmt.Fprintf(&b, "  ERROR  %v\n", f.Err)
			continue
		}
		for _, c := range f.Cases {
			if c.Passed {
				fmt.Fprintf(&b, "  PASS  %s (%s)\n", c.Name, c.Duration.Round(time.Microsecond))
				continue
			}
			fmt.Fprintf(&b, "  FAIL  %s (%s)\n", c.Name, c.Duration.Round(time.Microsecond))
			for _, d := range c.Diffs {
				fmt.Fprintf(&b, "          %s\n", d)
			}
			if c.Got.Code != "" {
				fmt.Fprintf(&b, "          got: %s (%s) policy=%q rule=%q\n", c.Got.Effect, c.Got.Code, c.Got.Policy, c.Got.Rule)
				fmt.Fprintf(&b, "          reason: %s\n", c.Got.Reason)
			}
		}
	}
	b.WriteString(strings.Repeat("-", 72) + "\n")
	fmt.Fprintf(&b, "PASS: %d/%d\n", r.PassCount, r.PassCount+r.FailCount)
	if r.FailCount > 0 {
		fmt.Fprintf(&b, "FAIL: %d/%d\n", r.FailCount, r.PassCount+r.FailCount)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
