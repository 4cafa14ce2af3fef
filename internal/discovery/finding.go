// Package discovery finds credentials that already exist in files, directories,
// archives and git history: cloud keys, API tokens, private keys, passwords in
// connection strings and configuration. It reports each one as a Finding that
// names where the credential lives and identifies it by a keyed fingerprint,
// never by its value: the value is held in a warden.Secret and leaves the
// process only when a caller reveals it on purpose (warden scan --show-secrets).
package discovery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"

	"warden"
)

// Finding is one credential found at one location. The same credential found
// at several locations (or in several scans) yields findings with the same
// Fingerprint, which is what an inventory de-duplicates on.
type Finding struct {
	// Rule is the stable id of the rule that matched (e.g. "github-pat").
	Rule string `json:"rule"`
	// Kind names the kind of credential for people (e.g. "GitHub token").
	Kind string `json:"kind"`
	// File is the location's path: relative to the scanned root with forward
	// slashes for directory scans and history, the path as given for a file
	// argument. A file inside an archive is "archive.zip!inner/path".
	File string `json:"file"`
	// Line and Column are 1-based; Column counts Unicode code points (invalid
	// UTF-8 bytes count one each). For history findings Line is the line in
	// the file as of Commit.
	Line   int `json:"line"`
	Column int `json:"column"`
	// EndLine is the last line of the secret (multi-line private keys).
	EndLine int `json:"end_line"`
	// Commit, Author (as "Name <email>") and Date are set for findings in git
	// history; empty for the working tree.
	Commit string    `json:"commit,omitempty"`
	Author string    `json:"author,omitempty"`
	Date   time.Time `json:"date,omitzero"`
	// Fingerprint is hex HMAC-SHA256 of the secret under the scan's
	// fingerprint key: equal secrets have equal fingerprints under one key.
	Fingerprint string `json:"fingerprint"`
	// Preview shows a few leading characters of the secret and asterisks; it
	// never reveals enough to use the secret.
	Preview string `json:"preview"`
	// Verified reports that the value passed an offline check of its format's
	// checksum (Warden keys, GitHub classic tokens, npm tokens).
	Verified bool `json:"verified"`
	// Secret is the value itself; its JSON and string forms are redacted.
	Secret warden.Secret `json:"-"`
}

// DefaultFingerprintKey is the HMAC key used when the caller gives none
// (warden scan without --fingerprint-key or WARDEN_SCAN_KEY). It is public and
// fixed so that fingerprints agree across machines and runs; because it is
// public, a fingerprint of a guessable secret (a weak password) can be
// confirmed by anyone who guesses it. Organisations that share reports should
// set their own key.
const DefaultFingerprintKey = "warden-discovery-fingerprint-v1"

// Fingerprint returns the hex HMAC-SHA256 of secret under key.
func Fingerprint(key []byte, secret string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// Preview returns a redacted preview of secret: its non-secret prefix (the
// rule's literal prefix, extended to the last "_" or "-" among the first 16
// characters, e.g. "sk_live_"), then at most 4 characters and never more than
// a quarter of the rest, then a fixed run of asterisks so the preview does
// not reveal the length either.
func Preview(secret, prefix string) string {
	if prefix == "" || !strings.HasPrefix(secret, prefix) {
		prefix = ""
	} else if i := strings.LastIndexAny(secret[:min(16, len(secret))], "_-"); i+1 > len(prefix) {
		prefix = secret[:i+1]
	}
	rest := secret[len(prefix):]
	n := min(4, utf8.RuneCountInString(rest)/4)
	shown := rest
	for i := range rest {
		if n == 0 {
			shown = rest[:i]
			break
		}
		n--
	}
	return sanitize(prefix+shown) + "*****"
}

// sanitize makes s safe to print on a terminal and in JSON: invalid UTF-8
// becomes U+FFFD and control characters become their escaped form, so that a
// file name or preview cannot move the cursor or rewrite the screen.
func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			b.WriteString(`\x`)
			b.WriteString(hex.EncodeToString([]byte{byte(r)}))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
