package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPatternMatching(t *testing.T) {
	cases := []struct {
		pat, action string
		want        bool
	}{
		{"*", "gmail:messages.send", true},
		{"*", "a:b", true},
		{"gmail:*", "gmail:messages.send", true},
		{"gmail:*", "gmail:x", true},
		{"gmail:*", "gmailx:send", false},
		{"gmail:*", "xgmail:send", false},
		{"*:admin.*", "github:admin.users", true},
		{"*:admin.*", "github:admin.", false}, // not a valid action? it is: "admin." is a valid operation
		{"*:admin.*", "github:xadmin.users", false},
		{"*:admin.*", "github:admin", false},
		{"crm:*.delete", "crm:contacts.delete", true},
		{"crm:*.delete", "crm:.delete", true}, // empty run
		{"crm:*.delete", "crm:delete", false},
		{"crm:*.delete", "crm:contacts.delete.now", false},
		{"crm:*.delete", "crm:a.b.delete", true},
		{"*:*", "a:b", true},
		{"a*:*b", "a:b", true}, // empty runs on both sides
		{"a*b:c", "ab:c", true},
		{"a*b:c", "axxb:c", true},
		{"a*b:c", "axxbc:c", false},
		{"**:x", "abc:x", true},
		{"gmail:messages.send", "gmail:messages.send", true},
		{"gmail:messages.send", "gmail:messages.sen", false},
		{"gmail:*", "GMAIL:send", false}, // invalid action, matches nothing
		{"bad", "bad:x", false},          // invalid pattern, matches nothing
	}
	for _, tc := range cases {
		if tc.pat == "*:admin.*" && tc.action == "github:admin." {
			tc.want = true // '*' matches the empty run after "admin."
		}
		if got := MatchAction(tc.pat, tc.action); got != tc.want {
			t.Errorf("MatchAction(%q, %q) = %v, want %v", tc.pat, tc.action, got, tc.want)
		}
	}
}

func TestParseAction(t *testing.T) {
	for _, bad := range []string{"", ":", "a:", ":b", "a", "a:b:c", "A:b", "a:B", "a b:c", "a:b/c", "a:*"} {
		if _, _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) accepted", bad)
		}
	}
	c, o, err := ParseAction("github-mcp:create_issue.v2")
	if err != nil || c != "github-mcp" || o != "create_issue.v2" {
		t.Fatalf("%q %q %v", c, o, err)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"*", "a/b.c", true},
		{"/data/*.csv", "/data/a/b.csv", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true},
		{"*a*b*c*", "xaxbxcx", true},
		{"*a*b*c*", "xaxcxbx", false},
		{"", "", true},
		{"", "a", false},
		{"a**", "a", true},
	}
	for _, tc := range cases {
		if got := glob(tc.pat, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

// globRegexp is the reference: the pattern translated to an anchored regexp.
func globRegexp(pat string, star string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pat {
		switch r {
		case '*':
			b.WriteString(star)
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile("(?s)" + b.String())
}

// FuzzActionMatch checks the action matcher against a regexp reference: '*'
// matches any run of characters other than ':'.
func FuzzActionMatch(f *testing.F) {
	for _, s := range [][2]string{{"*", "a:b"}, {"crm:*.delete", "crm:x.delete"}, {"*:admin.*", "gh:admin.x"}, {"a*b*:*", "ab:c"}, {"x*:*y", "x:y"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, action string) {
		got := MatchAction(pat, action)
		_, msg := compilePattern(pat)
		_, _, aerr := ParseAction(action)
		if msg != "" || aerr != nil {
			if got {
				t.Fatalf("invalid input matched: %q %q", pat, action)
			}
			return
		}
		want := pat == "*" || globRegexp(pat, "[^:]*").MatchString(action)
		if got != want {
			t.Fatalf("MatchAction(%q, %q) = %v, reference says %v", pat, action, got, want)
		}
	})
}

// FuzzGlob checks globMatch against the regexp reference.
func FuzzGlob(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*?*", "é")
	f.Fuzz(func(t *testing.T, pat, s string) {
		// CEL strings are valid UTF-8; with invalid bytes the reference's
		// U+FFFD substitution, not glob, would be wrong (see the kept
		// crasher 1ce57ebbac179533).
		if len(pat) > 64 || len(s) > 256 || !utf8.ValidString(pat) || !utf8.ValidString(s) {
			return
		}
		want := globRegexp(pat, ".*").MatchString(s)
		if got := glob(pat, s); got != want {
			t.Fatalf("glob(%q, %q) = %v, reference says %v", pat, s, got, want)
		}
	})
}
