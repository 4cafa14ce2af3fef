package discovery

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"math"
	"regexp"
	"strings"

	"warden"
)

// This file holds the precision side of detection: offline checksum checks
// and the filters that drop documentation examples, placeholders, template
// references, hashes, UUIDs and test fixtures. Each filter errs towards
// keeping a match: a missed credential costs more than a false alarm, so a
// filter drops only what cannot plausibly be a live secret.

func verifyWarden(s string) bool {
	_, ok := warden.ParseKey(s)
	return ok
}

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// verifyGitHubStyle checks the checksum of GitHub's classic token format (and
// npm's, which copies it): a 4-character prefix, 30 random base62 characters
// and 6 base62 digits of CRC-32 (IEEE) over the random part.
func verifyGitHubStyle(s string) bool {
	if len(s) != 40 {
		return false
	}
	random, sum := s[4:34], s[34:]
	var want uint64
	for i := 0; i < len(sum); i++ {
		d := strings.IndexByte(base62Digits, sum[i])
		if d < 0 {
			return false
		}
		want = want*62 + uint64(d)
	}
	return uint64(crc32.ChecksumIEEE([]byte(random))) == want
}

// docExamples are credentials printed in vendors' documentation. They are
// public, dead, and the most common false positive there is.
var docExamples = map[string]bool{
	"AKIAIOSFODNN7EXAMPLE":                                                                     true,
	"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY":                                                 true,
	"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY":                                                 true,
	"sk_test_4eC39HqLyjWDarjtT1zdp7dc":                                                         true,
	"sk_test_BQokikJOvBiI2HlWgH4olfQ2":                                                         true,
	"sk_test_26PHem9AhJZvU623DfE1x4sd":                                                         true,
	"rk_test_26PHem9AhJZvU623DfE1x4sd":                                                         true,
	"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":                    true,
	"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe":                                                  true,
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==": true,
}

// placeholderWords mark a value as a stand-in when it contains them.
var placeholderWords = []string{
	"example", "sample", "placeholder", "changeme", "change_me", "change-me", "changeit",
	"dummy", "redacted", "your_", "your-", "yourpass", "yoursecret", "yourtoken", "yourkey", "my_secret", "mysecret",
	"<", ">", "xxxx", "****", "....", "…", "replace", "insert", "todo", "fixme", "notreal", "not_real", "not-a-real",
	"fake", "invalid", "secret", "password", "passwd", "goeshere", "goes_here", "goes-here", "...", "secret_here", "token_here", "key_here", "here_", "_here", "foobar", "lorem",
}

// placeholderValues are whole values that stand for "put the secret here".
var placeholderValues = map[string]bool{
	"password": true, "passwd": true, "pass": true, "pwd": true, "secret": true, "token": true,
	"apikey": true, "api_key": true, "key": true, "none": true, "null": true, "nil": true,
	"true": true, "false": true, "undefined": true, "empty": true, "test": true, "testing": true,
	"admin": true, "root": true, "user": true, "username": true, "guest": true, "default": true,
	"required": true, "optional": true, "string": true, "value": true, "secretkey": true,
	"p@ssw0rd": true, "p@ssword": true, "password1": true, "password123": true, "letmein": true,
	"qwerty": true, "123456": true, "12345678": true, "abc123": true, "hunter2": true,
	"passw0rd": true, "p4ssw0rd": true, "pa55word": true, "supersecret": true, "s3cr3t": true, "secret123": true, "foo": true, "bar": true, "baz": true,
}

var (
	identPathRe = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|::|->)[A-Za-z_$][A-Za-z0-9_$]*)+$`)
	// identRe matches code identifiers and words (snake_case, UPPER_CASE,
	// camelCase with acronyms, kebab-case with small numbers), which sit
	// where a value would in source code. Words are letters only, so random
	// strings with digits inside almost never match.
	identRe = regexp.MustCompile(`^_?[a-z]+(?:_[a-z]+)*[0-9]*$|^_?[A-Z]+(?:_[A-Z]+)*[0-9]*$|^[a-zA-Z][a-z]+(?:[A-Z]+[a-z]*)+[0-9]*$|^(?i:[a-z]+[0-9]*(?:-(?:[a-z]+|[0-9]{1,4}))+)$`)
	// assignRe matches values that are themselves assignments (a DSN's
	// "host=..."), whose secret, if any, is elsewhere.
	assignRe = regexp.MustCompile(`^[A-Za-z_]+=`)
	hexRe    = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	// formatVerbRe matches printf verbs.
	formatVerbRe = regexp.MustCompile(`%[-+# 0-9.]*[sdvqxf]`)
	// wordsRe matches values made of letter-only words joined by separators
	// (TestGoList/GOPATH, DAV:no-lock): names and paths, not secrets.
	wordsRe = regexp.MustCompile(`^[A-Za-z]+[0-9]*(?:[/:._\-][A-Za-z]+[0-9]*)*$`)
	// fsPathRe matches file-system paths, with an optional "name:" before.
	fsPathRe   = regexp.MustCompile(`^[a-z]*:?(?:/[a-z._\-]+){2,}/?$`)
	hexNumRe   = regexp.MustCompile(`^0[xX][0-9a-fA-F]+$`)
	uuidAnyRe  = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	hashPrefix = []string{"sha1:", "sha256:", "sha384:", "sha512:", "sha1-", "sha256-", "sha384-", "sha512-", "md5:", "$2a$", "$2b$", "$2y$", "$argon2", "$scrypt$", "$5$", "$6$", "$1$", "pbkdf2_", "{ssha}", "{sha}", "{bcrypt}", "{noop}", "{pbkdf2}"}
)

// isPlaceholder reports whether v is a stand-in or a reference to a secret
// held elsewhere (an environment variable, a template, a vault path) rather
// than a secret.
func isPlaceholder(v string) bool {
	l := strings.ToLower(v)
	if placeholderValues[l] || docExamples[v] {
		return true
	}
	for _, w := range placeholderWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	// References: ${VAR}, $VAR, %(name)s, {{ x }}, #{x}, %VAR%, @var@, env:X, vault:…
	if strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "$2") && !strings.HasPrefix(v, "$argon") {
		return true
	}
	if strings.Contains(v, "${") || strings.Contains(v, "{{") || strings.Contains(v, "#{") || strings.Contains(v, "%(") {
		return true
	}
	// Format strings ("%v/conc=%d"); one "%d" alone can be part of a password.
	if len(formatVerbRe.FindAllStringIndex(v, 2)) == 2 {
		return true
	}
	if len(v) > 2 && ((v[0] == '%' && v[len(v)-1] == '%') || (v[0] == '@' && v[len(v)-1] == '@') || (v[0] == '{' && v[len(v)-1] == '}')) {
		return true
	}
	for _, p := range []string{"env:", "env.", "vault:", "secret:", "secretref:", "ref+", "arn:aws:secretsmanager", "process.env", "os.environ", "file:", "op://", "sm://", "projects/"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	// A single repeated character (********, 000000, xxxxxx).
	if strings.Count(v, v[:1]) == len(v) {
		return true
	}
	return false
}

// isHash reports values that are stored hashes or content digests, not
// credentials.
func isHash(v string) bool {
	l := strings.ToLower(v)
	for _, p := range hashPrefix {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// classes counts the character classes (lower, upper, digit, other) in s.
func classes(s string) int {
	var lo, up, di, ot int
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			lo = 1
		case c >= 'A' && c <= 'Z':
			up = 1
		case c >= '0' && c <= '9':
			di = 1
		default:
			ot = 1
		}
	}
	return lo + up + di + ot
}

// looksFake reports a token body that a person typed rather than a random
// generator made: low entropy, long runs of one character or of an ascending
// sequence (abcdef, 123456), or words that mark fixtures and examples.
// Random bodies of the lengths the rules accept almost never show these.
func looksFake(body string) bool {
	if len(body) >= 12 && entropy(body) < 2.6 {
		return true
	}
	l := strings.ToLower(body)
	for _, w := range []string{"example", "sample", "dummy", "fake", "xxxx", "placeholder", "redacted", "notreal", "testtest", "test_token", "testkey", "testing"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	run, asc := 1, 1
	for i := 1; i < len(l); i++ {
		if l[i] == l[i-1] {
			run++
		} else {
			run = 1
		}
		if l[i] == l[i-1]+1 && isAlnum(l[i]) {
			asc++
		} else {
			asc = 1
		}
		if run >= 6 || asc >= 6 {
			return true
		}
	}
	return false
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// secretSuffixes in a key name say its value is not the secret itself but
// something about it (where it is, how long it lives, what it is called).
var nonSecretKeySuffixes = []string{
	"_url", "_uri", "url", "uri", "_endpoint", "endpoint", "_path", "path", "_file", "file", "_dir", "_name", "name",
	"_id", "id", "_type", "type", "_length", "_len", "length", "_size", "size", "_count", "count", "_max", "_min",
	"_limit", "_expiry", "_expires", "expires", "expiry", "_ttl", "ttl", "_timeout", "timeout", "_header", "header",
	"_prefix", "prefix", "_field", "field", "_format", "format", "_version", "version", "_enabled", "enabled",
	"_required", "required", "_hash", "hash", "_digest", "digest", "_algorithm", "algorithm", "_policy", "policy",
	"_regex", "_pattern", "pattern", "_mode", "mode", "_label", "label", "_hint", "hint", "_ref", "ref", "_env",
	"_var", "_key_id", "keyid", "_location", "location", "_store", "_provider", "provider", "_method", "method",
	"_rotation", "_at", "_days", "_index", "index", "_template", "template", "_kind", "kind",
}

// nonSecretKeyParts mark names whose values are public by design.
var nonSecretKeyParts = []string{"sec-websocket", "public", "publishable", "pubkey", "pub_key", "csrf", "_tokenizer", "tokenizer", "author", "authority", "authorize", "authorization_url", "oauth_url", "passenger", "compass", "bypass", "passthrough", "keyboard", "monkey", "hockey", "turkey", "primary_key", "foreign_key", "sort_key", "partition_key", "cache_key", "idempotency", "hotkey", "keymap", "keycode"}

// secretKeyName reports whether an assigned name says its value is a secret.
func secretKeyName(k string) bool {
	l := strings.ToLower(strings.Trim(k, `"'`+"`"+`[]`))
	for _, p := range nonSecretKeyParts {
		if strings.Contains(l, p) {
			return false
		}
	}
	if l == "pwd" || strings.HasSuffix(l, ".pwd") {
		return false // the shell's working directory, not a password
	}
	for _, s := range nonSecretKeySuffixes {
		if strings.HasSuffix(l, s) {
			return false
		}
	}
	return true
}

// plausibleValue decides whether a value assigned to a secret-looking name
// could be a real secret: not a placeholder, reference, hash, UUID, number,
// code identifier or path, and random-looking enough for its length.
func plausibleValue(v string) bool {
	if len(v) < 8 || isPlaceholder(v) || isHash(v) || uuidAnyRe.MatchString(v) || hexNumRe.MatchString(v) {
		return false
	}
	// Code around a name: &x, *p, */ a::b, .method, prefix-, label:
	core := strings.TrimRight(strings.TrimLeft(v, "&*!./"), "-_./:,;")
	if identPathRe.MatchString(core) || identRe.MatchString(core) || wordsRe.MatchString(core) || assignRe.MatchString(v) {
		return false
	}
	if len(v) < 16 && hexRe.MatchString(v) {
		return false // short hex: ids, colours, short hashes
	}
	// Paths, URLs and code: string concatenation ("PWD="+dir).
	if strings.HasPrefix(v, "/") || strings.HasPrefix(v, "./") || strings.HasPrefix(v, "http") || strings.HasPrefix(v, "~/") || strings.HasPrefix(v, "+") {
		return false
	}
	if fsPathRe.MatchString(v) {
		return false
	}
	// Base64 of readable text that would not pass as a value itself ("the
	// sample nonce", "testing:testing", keyboard mash): a random secret in
	// base64 decodes to bytes, not to words.
	if dec, err := base64.StdEncoding.DecodeString(v); err == nil && len(dec) >= 6 && printable(dec) && !plausibleValue(string(dec)) {
		return false
	}
	digits := 0
	for i := 0; i < len(v); i++ {
		if v[i] >= '0' && v[i] <= '9' {
			digits++
		}
	}
	if digits == len(v) || (digits == len(v)-1 && strings.ContainsAny(v, ".:")) {
		return false // numbers, versions, ports
	}
	h := entropy(v)
	switch {
	case len(v) < 12:
		return h >= 2.5 && classes(v) >= 2
	case len(v) < 20:
		return h >= 3.0 && classes(v) >= 2
	default:
		return h >= 3.3 && (classes(v) >= 2 || len(v) >= 32)
	}
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// keepPassword is the decoy filter for passwords in URLs and credential
// files: any value is a secret unless it is a placeholder or reference.
func keepPassword(v, _ string) bool {
	if isPlaceholder(v) || len(v) < 3 {
		return false
	}
	return entropy(v) >= 1.5
}

// keepJWT drops strings that only look like JWTs and the jwt.io example.
func keepJWT(tok, _ string) bool {
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) != 3 {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil || !json.Valid(hdr) || !bytes.Contains(hdr, []byte(`"alg"`)) {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || !json.Valid(payload) {
		return false
	}
	if bytes.Contains(payload, []byte(`"John Doe"`)) && bytes.Contains(payload, []byte(`"1234567890"`)) {
		return false // the jwt.io example
	}
	return !bytes.Contains(hdr, []byte(`"none"`))
}

// keepDockerAuth keeps a Docker config "auth" only when it decodes to
// user:password with a real-looking password; identity tokens are kept when
// they look random.
func keepDockerAuth(v, key string) bool {
	if strings.EqualFold(key, "identitytoken") {
		return !isPlaceholder(v) && entropy(v) >= 3
	}
	dec, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	return ok && user != "" && keepPassword(pass, "")
}
