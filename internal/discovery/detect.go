package discovery

import (
	"bytes"
	"slices"
	"sort"
	"unicode/utf8"
)

// candidate is a match before it becomes a Finding: a rule, the span of the
// secret's location in the scanned buffer, and the secret (which may differ
// from the span's bytes when it was decoded, as in Kubernetes Secrets).
type candidate struct {
	rule       *detector
	start, end int
	secret     string
	verified   bool
}

// Window bounds around an anchor hit, in bytes. A key/value match starts at
// most maxKeyLead bytes before its anchor (the start of the key name) and ends
// at most maxValueTail bytes after it; token formats start at their anchor.
// Bounding the window keeps the regular expressions off long lines (minified
// JavaScript, one-line JSON) where they would otherwise run over megabytes.
const (
	maxKeyLead   = 72
	maxValueTail = 420
	maxPEMBlock  = 16 << 10
	maxSecretLen = 8 << 10
)

// anchorTable finds every anchor of every rule in one pass: it is indexed by
// the first two bytes of an anchor (lowercased), so the hot loop does one
// table load per input byte and compares anchors only where two bytes agree.
type anchorTable struct {
	slot   [1 << 16]uint16 // 1-based index into groups; 0: no anchor starts so
	groups [][]anchor
}

type anchor struct {
	text  []byte // lowercase unless exact
	exact bool
	rules []*detector
}

var lowerTable = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		t[i] = c
	}
	return t
}()

var anchors = buildAnchors()

func buildAnchors() *anchorTable {
	t := &anchorTable{}
	type key struct {
		s     string
		exact bool
	}
	byKey := map[key]*anchor{}
	var order []key
	add := func(r *detector, s string, exact bool) {
		if !exact {
			s = string(bytes.ToLower([]byte(s)))
		}
		if len(s) < 2 {
			panic("discovery: anchor shorter than 2 bytes in rule " + r.ID)
		}
		k := key{s, exact}
		a := byKey[k]
		if a == nil {
			a = &anchor{text: []byte(s), exact: exact}
			byKey[k] = a
			order = append(order, k)
		}
		a.rules = append(a.rules, r)
	}
	for _, r := range rules {
		if r.Paths != nil {
			continue // path-scoped rules run on the whole (small) file instead
		}
		for _, s := range r.Anchors {
			add(r, s, false)
		}
		for _, s := range r.CaseAnchors {
			add(r, s, true)
		}
	}
	for _, k := range order {
		a := byKey[k]
		idx := uint16(lowerTable[a.text[0]])<<8 | uint16(lowerTable[a.text[1]])
		if t.slot[idx] == 0 {
			t.groups = append(t.groups, nil)
			t.slot[idx] = uint16(len(t.groups))
		}
		g := t.slot[idx] - 1
		t.groups[g] = append(t.groups[g], *a)
	}
	return t
}

// find calls fn for every anchor occurrence in buf.
func (t *anchorTable) find(buf []byte, fn func(a *anchor, pos int)) {
	n := len(buf)
	for i := 0; i+1 < n; i++ {
		s := t.slot[uint16(lowerTable[buf[i]])<<8|uint16(lowerTable[buf[i+1]])]
		if s == 0 {
			continue
		}
		for j := range t.groups[s-1] {
			a := &t.groups[s-1][j]
			if i+len(a.text) > n {
				continue
			}
			if a.exact {
				if bytes.Equal(buf[i:i+len(a.text)], a.text) {
					fn(a, i)
				}
				continue
			}
			ok := true
			for k := 2; k < len(a.text); k++ {
				if lowerTable[buf[i+k]] != a.text[k] {
					ok = false
					break
				}
			}
			if ok {
				fn(a, i)
			}
		}
	}
}

// scanContent finds the credentials in buf, a text buffer from the file at
// slash path p. structured enables the detectors that need the whole file
// (Kubernetes manifests); callers turn it off for partial chunks. depth
// bounds recursion into decoded values.
func scanContent(p string, buf []byte, structured bool, depth int) []candidate {
	if len(buf) == 0 {
		return nil
	}
	type window struct{ lo, hi int }
	perRule := map[*detector][]window{}
	var pemHits []int
	anchors.find(buf, func(a *anchor, pos int) {
		for _, r := range a.rules {
			if r.ID == "private-key" {
				pemHits = append(pemHits, pos)
				continue
			}
			if r.Pre != nil && !r.Pre(buf, pos) {
				continue
			}
			lo := max(0, pos-maxKeyLead)
			if i := bytes.LastIndexByte(buf[lo:pos], '\n'); i >= 0 {
				lo += i + 1
			}
			if r.keyGroup >= 0 && r.Paths == nil {
				// Key/value rules: the match starts with the key name that
				// holds the anchor, so the window starts one byte before it.
				k := pos
				for k > lo && isKeyByte(buf[k-1]) {
					k--
				}
				lo = max(lo, k-1)
			}
			tail := r.Tail
			if tail == 0 {
				tail = maxValueTail
			}
			hi := min(len(buf), pos+tail)
			if i := bytes.IndexByte(buf[pos:hi], '\n'); i >= 0 {
				hi = pos + i
			}
			perRule[r] = append(perRule[r], window{lo, hi})
		}
	})

	// Each window is matched on its own (merging the windows of dense
	// anchors would hand the regexp engine long inputs, where Go falls back
	// from its backtracker to the much slower NFA); a match found from two
	// overlapping windows is kept once.
	var out []candidate
	type span struct {
		r          *detector
		start, end int
	}
	seen := map[span]bool{}
	source := isSource(p)
	emit := func(r *detector, start, end int, secret, body, key string, quoted bool) {
		if seen[span{r, start, end}] {
			return
		}
		seen[span{r, start, end}] = true
		if r.Generic && source && !quoted {
			return // in code, an unquoted value is an identifier or expression
		}
		c, ok := judge(r, secret, body, key)
		if !ok {
			return
		}
		c.start, c.end = start, end
		out = append(out, c)
	}
	runRegexp := func(r *detector, lo, hi int) {
		for _, m := range r.Regexp.FindAllSubmatchIndex(buf[lo:hi], -1) {
			s0, s1 := m[2*r.secretGroup], m[2*r.secretGroup+1]
			if s0 < 0 {
				continue
			}
			secret := string(buf[lo+s0 : lo+s1])
			body := secret
			for _, g := range r.bodyGroups {
				if m[2*g] >= 0 {
					body = string(buf[lo+m[2*g] : lo+m[2*g+1]])
					break
				}
			}
			key := ""
			if r.keyGroup >= 0 && m[2*r.keyGroup] >= 0 {
				key = string(buf[lo+m[2*r.keyGroup] : lo+m[2*r.keyGroup+1]])
			}
			quoted := r.quoteGroup >= 0 && m[2*r.quoteGroup] >= 0
			emit(r, lo+s0, lo+s1, secret, body, key, quoted)
		}
	}

	// Anchored rules, in rule order so the result does not depend on map
	// iteration; identical windows (several anchors on one line) run once.
	for _, r := range rules {
		ws := perRule[r]
		if len(ws) == 0 || r.Regexp == nil {
			continue
		}
		last := window{-1, -1}
		for _, w := range ws {
			if w == last {
				continue
			}
			last = w
			runRegexp(r, w.lo, w.hi)
		}
	}
	// Path-scoped rules read their whole (small) file.
	for _, r := range rules {
		if r.Paths != nil && r.Regexp != nil && r.Paths(p) {
			runRegexp(r, 0, len(buf))
		}
	}
	for _, pos := range pemHits {
		if c, ok := privateKeyAt(buf, pos); ok {
			out = append(out, c)
		}
	}
	if structured && depth == 0 {
		out = append(out, kubernetesSecrets(p, buf, depth)...)
	}
	return resolveOverlaps(out)
}

func isKeyByte(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' }

// judge applies a rule's checks to one match: checksum, documentation
// examples, placeholders, fake-looking bodies and the generic value test.
func judge(r *detector, secret, body, key string) (candidate, bool) {
	c := candidate{rule: r, secret: secret}
	if r.Verify != nil {
		c.verified = r.Verify(secret)
		if r.MustVerify && !c.verified {
			return c, false
		}
	}
	// Regexps bound lengths loosely (large counted repetitions make Go's
	// matcher slow); the real bound is here.
	if len(secret) > maxSecretLen || (r.Generic && len(secret) > 256) {
		return c, false
	}
	if docExamples[secret] {
		return c, false
	}
	if !c.verified {
		if r.Generic {
			if !plausibleValue(secret) {
				return c, false
			}
		}
		if !r.NoFakeCheck && looksFake(body) {
			return c, false
		}
	}
	if r.Generic && key != "" && !secretKeyName(key) {
		return c, false
	}
	if r.Keep != nil && !r.Keep(secret, key) {
		return c, false
	}
	return c, true
}

// resolveOverlaps keeps, among candidates whose spans overlap, the one with
// the highest priority (then the longest), so that a GitHub token assigned to
// GITHUB_TOKEN is reported once, as a GitHub token.
func resolveOverlaps(cs []candidate) []candidate {
	if len(cs) < 2 {
		return cs
	}
	slices.SortStableFunc(cs, func(a, b candidate) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end
	})
	out := cs[:0:0]
	for _, c := range cs {
		if n := len(out); n > 0 && c.start < out[n-1].end {
			last := &out[n-1]
			if better(c, *last) {
				*last = c
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

func better(a, b candidate) bool {
	if a.rule.Priority != b.rule.Priority {
		return a.rule.Priority > b.rule.Priority
	}
	return a.end-a.start > b.end-b.start
}

// lineIndex maps byte offsets in a buffer to 1-based lines and columns.
type lineIndex struct {
	buf    []byte
	starts []int // offset of each line's first byte
}

func newLineIndex(buf []byte) *lineIndex {
	starts := make([]int, 1, 1+bytes.Count(buf, []byte{'\n'}))
	for i, b := range buf {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	return &lineIndex{buf: buf, starts: starts}
}

// locate returns the 0-based line and 1-based column (in code points) of off.
func (li *lineIndex) locate(off int) (line, col int) {
	line = sort.SearchInts(li.starts, off+1) - 1
	return line, utf8.RuneCount(li.buf[li.starts[line]:off]) + 1
}

// lineText returns line (0-based) without its newline.
func (li *lineIndex) lineText(line int) []byte {
	lo := li.starts[line]
	hi := len(li.buf)
	if line+1 < len(li.starts) {
		hi = li.starts[line+1] - 1
	}
	return li.buf[lo:hi]
}
