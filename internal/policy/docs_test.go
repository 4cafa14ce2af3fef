package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocExamples compiles every policy example in docs/policy.md, so the
// reference never shows a policy that Warden would reject.
func TestDocExamples(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(data), "```yaml\n")
	n := 0
	for _, b := range blocks[1:] {
		src, _, _ := strings.Cut(b, "```")
		if !strings.Contains(src, "apiVersion: warden/v1") {
			continue
		}
		n++
		doc, err := Parse([]byte(src), ContentTypeYAML)
		if err == nil {
			_, err = Compile(doc)
		}
		if err != nil {
			t.Errorf("example %d does not compile: %v\n%s", n, err, src)
		}
	}
	if n < 8 {
		t.Fatalf("found only %d examples", n)
	}
}
