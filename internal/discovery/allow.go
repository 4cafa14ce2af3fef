package discovery

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// IgnoreFileName is the allowlist file read from the top of each scanned
// directory.
const IgnoreFileName = ".wardenignore"

// inlineAllow on a finding's (first) line suppresses it.
const inlineAllow = "warden:allow"

// Allowlist suppresses findings by path glob, rule id or fingerprint. A nil
// *Allowlist allows nothing (suppresses nothing).
//
// Path globs follow .gitignore's main rules: "*" and "?" match within one
// path segment, "**" matches any number of segments, a pattern without "/"
// matches a file or directory name at any depth, a pattern with "/" is
// relative to the scanned root, and a trailing "/" matches directories only.
type Allowlist struct {
	Paths        []string
	Rules        []string
	Fingerprints []string
}

// Merge returns an allowlist holding a's entries and b's.
func (a *Allowlist) Merge(b *Allowlist) *Allowlist {
	out := &Allowlist{}
	for _, x := range []*Allowlist{a, b} {
		if x == nil {
			continue
		}
		out.Paths = append(out.Paths, x.Paths...)
		out.Rules = append(out.Rules, x.Rules...)
		out.Fingerprints = append(out.Fingerprints, x.Fingerprints...)
	}
	return out
}

// MatchRule reports whether findings of rule id are suppressed.
func (a *Allowlist) MatchRule(id string) bool {
	if a == nil {
		return false
	}
	for _, r := range a.Rules {
		if r == id {
			return true
		}
	}
	return false
}

// MatchFingerprint reports whether findings with fingerprint fp are
// suppressed.
func (a *Allowlist) MatchFingerprint(fp string) bool {
	if a == nil {
		return false
	}
	for _, f := range a.Fingerprints {
		if strings.EqualFold(f, fp) {
			return true
		}
	}
	return false
}

// MatchPath reports whether the slash path p (relative to the scanned root;
// a trailing "/" marks a directory) is suppressed.
func (a *Allowlist) MatchPath(p string) bool {
	if a == nil {
		return false
	}
	for _, g := range a.Paths {
		if matchGlob(g, p) {
			return true
		}
	}
	return false
}

// matchGlob implements the path-glob rules documented on Allowlist.
func matchGlob(pattern, p string) bool {
	isDir := strings.HasSuffix(p, "/")
	segs := strings.Split(strings.Trim(p, "/"), "/")
	dirOnly := strings.HasSuffix(pattern, "/")
	pattern = strings.Trim(pattern, "/")
	if pattern == "" {
		return false
	}
	// A match on a leading part of the path that is a directory covers
	// everything beneath it.
	isDirAt := func(k int) bool { return k < len(segs) || isDir }
	if !strings.Contains(pattern, "/") {
		for i, s := range segs {
			if ok, _ := path.Match(pattern, s); ok && (!dirOnly || isDirAt(i+1)) {
				return true
			}
		}
		return false
	}
	ps := strings.Split(pattern, "/")
	for k := 1; k <= len(segs); k++ {
		if matchSegs(ps, segs[:k]) && (!dirOnly || isDirAt(k)) {
			return true
		}
	}
	return false
}

func matchSegs(ps, segs []string) bool {
	for len(ps) > 0 {
		if ps[0] == "**" {
			for i := 0; i <= len(segs); i++ {
				if matchSegs(ps[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(ps[0], segs[0]); !ok {
			return false
		}
		ps, segs = ps[1:], segs[1:]
	}
	return len(segs) == 0
}

// ParseIgnore reads .wardenignore syntax: one entry per line; blank lines and
// lines starting with "#" are ignored; "rule:ID" names a rule,
// "fingerprint:HEX" a fingerprint, "path:GLOB" or a bare line a path glob.
func ParseIgnore(data []byte) (*Allowlist, error) {
	a := &Allowlist{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, val, ok := strings.Cut(line, ":")
		switch {
		case ok && kind == "rule":
			a.Rules = append(a.Rules, strings.TrimSpace(val))
		case ok && kind == "fingerprint":
			fp := strings.TrimSpace(val)
			if len(fp) != 64 || strings.Trim(strings.ToLower(fp), "0123456789abcdef") != "" {
				return nil, fmt.Errorf("line %d: fingerprint must be 64 hex digits", n)
			}
			a.Fingerprints = append(a.Fingerprints, fp)
		case ok && kind == "path":
			a.Paths = append(a.Paths, strings.TrimSpace(val))
		default:
			if _, err := path.Match(line, ""); err != nil {
				return nil, fmt.Errorf("line %d: bad glob %q", n, line)
			}
			a.Paths = append(a.Paths, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// LoadIgnoreFile reads an allowlist in .wardenignore syntax.
func LoadIgnoreFile(name string) (*Allowlist, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	a, err := ParseIgnore(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

// configFile is the YAML form of --config. Unknown keys are errors, so a
// misspelt key cannot silently allow nothing.
type configFile struct {
	Allow struct {
		Paths        []string `yaml:"paths"`
		Rules        []string `yaml:"rules"`
		Fingerprints []string `yaml:"fingerprints"`
	} `yaml:"allow"`
}

// LoadConfig reads a scan configuration: YAML (names ending .yaml, .yml or
// .json) with an "allow" section of paths, rules and fingerprints, or any
// other file in .wardenignore syntax.
func LoadConfig(name string) (*Allowlist, error) {
	ext := strings.ToLower(path.Ext(name))
	if ext != ".yaml" && ext != ".yml" && ext != ".json" {
		return LoadIgnoreFile(name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var cf configFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var b strings.Builder
	for _, p := range cf.Allow.Paths {
		b.WriteString("path:" + p + "\n")
	}
	for _, r := range cf.Allow.Rules {
		b.WriteString("rule:" + r + "\n")
	}
	for _, f := range cf.Allow.Fingerprints {
		b.WriteString("fingerprint:" + f + "\n")
	}
	a, err := ParseIgnore([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}
