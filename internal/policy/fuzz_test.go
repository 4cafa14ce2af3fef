package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"warden"
)

// FuzzParse feeds arbitrary bytes to Parse and Compile. They must never
// panic, must return *warden.Error on failure, and a document that parses
// must survive a canonical round trip unchanged.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"suite/support.yaml", "suite/github.yaml", "invalid/good.json", "invalid/bad.yaml"} {
		if b, err := os.ReadFile(filepath.Join("testdata", p)); err == nil {
			f.Add(b, "")
		}
	}
	f.Add([]byte(minimal), ContentTypeYAML)
	f.Add([]byte("a: &a [*a]"), ContentTypeYAML)
	f.Add([]byte(`{"apiVersion":"warden/v1","kind":"Policy","rules":[{"id":"x"}]}`), ContentTypeJSON)
	f.Fuzz(func(t *testing.T, data []byte, ct string) {
		doc, err := Parse(data, ct)
		if err != nil {
			if _, ok := err.(*warden.Error); !ok {
				t.Fatalf("Parse error %T is not *warden.Error: %v", err, err)
			}
			return
		}
		if _, err := Compile(doc); err != nil {
			if _, ok := err.(*warden.Error); !ok {
				t.Fatalf("Compile error %T is not *warden.Error: %v", err, err)
			}
		}
		for _, out := range []string{ContentTypeJSON, ContentTypeYAML} {
			enc, err := doc.Encode(out)
			if err != nil {
				t.Fatalf("Encode(%s): %v", out, err)
			}
			back, err := Parse(enc, out)
			if err != nil {
				if warden.IsCode(err, warden.CodeTooLarge) {
					continue
				}
				t.Fatalf("re-Parse of %s encoding failed: %v\n%s", out, err, enc)
			}
			a, _ := json.Marshal(doc)
			b, _ := json.Marshal(back)
			if string(a) != string(b) {
				t.Fatalf("round trip through %s changed the document:\n%s\n%s", out, a, b)
			}
		}
	})
}
