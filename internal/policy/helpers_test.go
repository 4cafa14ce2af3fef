package policy

import (
	"os"
	"testing"

	"warden"
)

// mustPolicy parses and compiles a YAML policy or fails the test.
func mustPolicy(t testing.TB, src string) *Policy {
	t.Helper()
	doc, err := Parse([]byte(src), ContentTypeYAML)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	p, err := Compile(doc)
	if err != nil {
		t.Fatalf("Compile: %v\n%s", err, src)
	}
	return p
}

// compileErr parses and compiles src and returns the *warden.Error (nil when
// the policy is valid).
func compileErr(t *testing.T, src, contentType string) *warden.Error {
	t.Helper()
	doc, err := Parse([]byte(src), contentType)
	if err == nil {
		_, err = Compile(doc)
	}
	if err == nil {
		return nil
	}
	we, ok := err.(*warden.Error)
	if !ok {
		t.Fatalf("error is %T, not *warden.Error: %v", err, err)
	}
	return we
}

func osWriteFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
