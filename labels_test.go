package warden

import (
	"regexp"
	"strings"
	"testing"
)

// ValidLabelKey is the rule identities had as a regular expression.
func TestValidLabelKey(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,62}$`)
	for _, k := range []string{"", "a", "team", "Team", "9", "app.kubernetes.io/name", "a-b_c.d/e", "-a", ".a", "_a", "/a",
		"team=x", "a b", "a\x00", "é", "a:b", strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		if got, want := ValidLabelKey(k), re.MatchString(k); got != want {
			t.Errorf("ValidLabelKey(%q) = %v, want %v", k, got, want)
		}
	}
}
