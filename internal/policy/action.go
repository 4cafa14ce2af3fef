package policy

import (
	"strings"
	"unicode/utf8"

	"warden"
)

// actionChar reports whether c may appear in a connector or operation name:
// lowercase letters, digits, '.', '_' and '-'.
func actionChar(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '.' || c == '_' || c == '-'
}

// ParseAction splits an action "connector:operation" into its parts. Both parts
// must be non-empty and use only lowercase letters, digits, '.', '_' and '-';
// there is exactly one ':'. Matching is case-sensitive, so an upper-case action
// could never match a (lowercase) pattern and is rejected instead.
func ParseAction(action string) (connector, operation string, err error) {
	i := strings.IndexByte(action, ':')
	if i <= 0 || i == len(action)-1 {
		return "", "", warden.FieldError("action", "action %q must have the form connector:operation", action)
	}
	for j := 0; j < len(action); j++ {
		if j == i {
			continue
		}
		if !actionChar(action[j]) {
			return "", "", warden.FieldError("action", "action %q may contain only lowercase letters, digits, '.', '_', '-' and one ':'", action)
		}
	}
	return action[:i], action[i+1:], nil
}

// pattern is a compiled action pattern. In a pattern, '*' matches any run of
// characters other than ':' (the empty run included); "*" alone matches every
// action.
type pattern struct {
	raw     string
	all     bool   // the pattern "*"
	conn    string // connector part
	op      string // operation part
	connLit bool   // connector part has no '*'
	opLit   bool   // operation part has no '*'
}

// compilePattern validates an action pattern. A pattern without ':' (other
// than "*"), with more than one ':', with an empty part, or with a character
// no action can contain is rejected: it could never match anything.
func compilePattern(s string) (pattern, string) {
	if s == "*" {
		return pattern{raw: s, all: true}, ""
	}
	i := strings.IndexByte(s, ':')
	switch {
	case s == "":
		return pattern{}, "an action pattern must not be empty"
	case i < 0:
		return pattern{}, "pattern must have the form connector:operation (only \"*\" alone may omit the ':')"
	case strings.IndexByte(s[i+1:], ':') >= 0:
		return pattern{}, "pattern has more than one ':'"
	case i == 0 || i == len(s)-1:
		return pattern{}, "both the connector and the operation part must be non-empty (use '*' for any)"
	}
	for j := 0; j < len(s); j++ {
		if j != i && s[j] != '*' && !actionChar(s[j]) {
			return pattern{}, "pattern may contain only lowercase letters, digits, '.', '_', '-', '*' and one ':'"
		}
	}
	p := pattern{raw: s, conn: s[:i], op: s[i+1:]}
	p.connLit = strings.IndexByte(p.conn, '*') < 0
	p.opLit = strings.IndexByte(p.op, '*') < 0
	return p, ""
}

// match reports whether the pattern matches the action with the given parts.
func (p *pattern) match(conn, op string) bool {
	if p.all {
		return true
	}
	if p.connLit {
		if p.conn != conn {
			return false
		}
	} else if !glob(p.conn, conn) {
		return false
	}
	if p.opLit {
		return p.op == op
	}
	return glob(p.op, op)
}

// MatchAction reports whether the action pattern pat matches action. Invalid
// patterns and actions match nothing. It is the matcher Decide uses, exported
// for tools that explain policies.
func MatchAction(pat, action string) bool {
	p, msg := compilePattern(pat)
	if msg != "" {
		return false
	}
	conn, op, err := ParseAction(action)
	if err != nil {
		return false
	}
	return p.match(conn, op)
}

// glob matches s against pat, where '*' matches any run of characters
// (including none) and '?' exactly one character (a UTF-8 rune). It runs in
// O(len(pat)*len(s)) in the worst case and allocates nothing: the classic
// single-backtrack algorithm, which is exact for patterns with only '*' and
// '?' wildcards.
func glob(pat, s string) bool {
	if pat == "*" {
		// The commonest pattern part ("*:admin.*", "gmail:*"): it would
		// otherwise backtrack once per rune of s.
		return true
	}
	px, sx := 0, 0
	starPx, starSx := -1, -1
	for sx < len(s) {
		if px < len(pat) {
			switch c := pat[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(s[sx:])
				px++
				sx += w
				continue
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starPx >= 0 {
			// Let the last '*' absorb one more rune and retry after it.
			_, w := utf8.DecodeRuneInString(s[starSx:])
			starSx += w
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	for px < len(pat) && pat[px] == '*' {
		px++
	}
	return px == len(pat)
}
