package discovery

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// canaryFindings scans a text holding a few secrets; the returned secrets
// must never appear in output unless it is asked for.
func canaryFindings(t *testing.T) ([]Finding, []string) {
	t.Helper()
	gh, pw := checksummed("ghp_"), "Kq9!"+randFrom(alnum, 16)
	key := pemKey(t)
	text := "GITHUB_TOKEN=" + gh + "\ndb:\n  password: " + pw + "\n" + key
	fs := New(Options{}).ScanBytes("dir/app config.yaml", []byte(text))
	if len(fs) != 3 {
		t.Fatalf("want 3 findings, got %+v", fs)
	}
	body := strings.Join(strings.Split(key, "\n")[1:3], "")
	return fs, []string{gh, pw, body[10:40]}
}

func TestOutputsNeverContainSecretsUnlessAsked(t *testing.T) {
	fs, canaries := canaryFindings(t)
	sum := Summarize(fs, Progress{Files: 1})
	for name, write := range map[string]func(*bytes.Buffer, bool) error{
		"table": func(b *bytes.Buffer, show bool) error { return WriteTable(b, fs, sum, show) },
		"json":  func(b *bytes.Buffer, show bool) error { return WriteJSON(b, fs, sum, show) },
		"sarif": func(b *bytes.Buffer, show bool) error { return WriteSARIF(b, fs, "test", show) },
	} {
		var hidden, shown bytes.Buffer
		if err := write(&hidden, false); err != nil {
			t.Fatal(err)
		}
		if err := write(&shown, true); err != nil {
			t.Fatal(err)
		}
		for _, c := range canaries {
			if strings.Contains(hidden.String(), c) {
				t.Errorf("%s output contains a secret without --show-secrets", name)
			}
		}
		for _, c := range canaries[:2] {
			if !strings.Contains(shown.String(), c) {
				t.Errorf("%s output with --show-secrets lacks the secret", name)
			}
		}
	}
	// fmt and JSON forms of the Finding itself redact the secret.
	b, _ := json.Marshal(fs)
	if strings.Contains(string(b), canaries[0]) {
		t.Error("json.Marshal(Finding) leaks the secret")
	}
}

func TestJSONOutput(t *testing.T) {
	fs, _ := canaryFindings(t)
	var b bytes.Buffer
	if err := WriteJSON(&b, fs, Summarize(fs, Progress{Files: 1, Bytes: 10}), false); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Findings []map[string]any `json:"findings"`
		Summary  Summary          `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Findings) != 3 || got.Summary.Findings != 3 || got.Summary.Credentials != 3 || got.Summary.Files != 1 {
		t.Fatalf("json: %s", b.String())
	}
	f := got.Findings[0]
	for _, k := range []string{"rule", "kind", "file", "line", "column", "end_line", "fingerprint", "preview", "verified"} {
		if _, ok := f[k]; !ok {
			t.Errorf("finding lacks %q: %v", k, f)
		}
	}
	if _, ok := f["secret"]; ok {
		t.Error("secret field present without --show-secrets")
	}
}

// TestSARIFShape checks the properties SARIF 2.1.0's schema requires (and
// the ones code-scanning services read) with their types.
func TestSARIFShape(t *testing.T) {
	fs, _ := canaryFindings(t)
	fs[0].Commit, fs[0].Author = "0123456789abcdef0123456789abcdef01234567", "A <a@example.org>"
	var b bytes.Buffer
	if err := WriteSARIF(&b, fs, "1.0", false); err != nil {
		t.Fatal(err)
	}
	var log map[string]any
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if log["version"] != "2.1.0" || log["$schema"] != SARIFSchema {
		t.Errorf("version/$schema: %v %v", log["version"], log["$schema"])
	}
	runs := log["runs"].([]any)
	if len(runs) != 1 {
		t.Fatalf("runs: %d", len(runs))
	}
	run := runs[0].(map[string]any)
	driver := run["tool"].(map[string]any)["driver"].(map[string]any)
	if driver["name"] != "warden" {
		t.Errorf("driver.name %v", driver["name"])
	}
	rules := driver["rules"].([]any)
	ruleIDs := map[string]int{}
	for i, r := range rules {
		rm := r.(map[string]any)
		id, _ := rm["id"].(string)
		if id == "" {
			t.Errorf("rule %d has no id", i)
		}
		ruleIDs[id] = i
		if sd, _ := rm["shortDescription"].(map[string]any); sd["text"] == "" {
			t.Errorf("rule %s: shortDescription.text", id)
		}
	}
	results := run["results"].([]any)
	if len(results) != len(fs) {
		t.Fatalf("results: %d", len(results))
	}
	for _, r := range results {
		rm := r.(map[string]any)
		id := rm["ruleId"].(string)
		if idx, ok := ruleIDs[id]; !ok || int(rm["ruleIndex"].(float64)) != idx {
			t.Errorf("result rule %s / index %v not in driver.rules", id, rm["ruleIndex"])
		}
		if msg, _ := rm["message"].(map[string]any); msg["text"] == "" {
			t.Error("message.text empty")
		}
		if lvl := rm["level"]; lvl != "error" {
			t.Errorf("level %v", lvl)
		}
		loc := rm["locations"].([]any)[0].(map[string]any)["physicalLocation"].(map[string]any)
		uri := loc["artifactLocation"].(map[string]any)["uri"].(string)
		if uri != "dir/app%20config.yaml" {
			t.Errorf("uri %q (must be a percent-encoded URI reference)", uri)
		}
		region := loc["region"].(map[string]any)
		if sl := region["startLine"].(float64); sl < 1 {
			t.Errorf("startLine %v", sl)
		}
		if pf := rm["partialFingerprints"].(map[string]any); len(pf["wardenFingerprint/v1"].(string)) != 64 {
			t.Error("partial fingerprint")
		}
	}
	if !strings.Contains(b.String(), "in commit 0123456789abcdef0123456789abcdef01234567 by A <a@example.org>") {
		t.Error("history finding's message does not name the commit")
	}
	if sarifURI("/abs/p q.txt") != "file:///abs/p%20q.txt" || sarifURI("a:b/c") != "./a:b/c" {
		t.Errorf("uris: %s %s", sarifURI("/abs/p q.txt"), sarifURI("a:b/c"))
	}
}

func TestPreview(t *testing.T) {
	for _, c := range []struct{ secret, prefix, want string }{
		{"ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh", "ghp_abcd*****"},
		{"github_pat_11ABCDEFG_" + strings.Repeat("x", 59), "github_pat_", "github_pat_11AB*****"},
		{"AKIAABCDEFGHIJKLMNOP", "AKIA", "AKIAABCD*****"},
		{"short", "", "s*****"},
		{"ab", "", "*****"},
		{"sk_live_0123456789abcdefghijklmn", "sk_live_", "sk_live_0123*****"},
	} {
		if got := Preview(c.secret, c.prefix); got != c.want {
			t.Errorf("Preview(%q, %q) = %q, want %q", c.secret, c.prefix, got, c.want)
		}
	}
}
