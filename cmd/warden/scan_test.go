package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"warden/internal/discovery"
)

// scanToken returns a fresh GitHub-style token (random body, valid checksum),
// built at run time so that no realistic secret is committed.
func scanToken() string {
	const a = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 30)
	for i := range b {
		b[i] = a[rand.IntN(62)]
	}
	n := crc32.ChecksumIEEE(b)
	sum := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		sum[i] = a[n%62]
		n /= 62
	}
	return "ghp_" + string(b) + string(sum)
}

// runScanCmd runs `warden scan ARGS` through newScanCmd with its own streams.
func runScanCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{getenv: func(k string) string { return env[k] }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	cmd := newScanCmd(c)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func scanFixture(t *testing.T) (dir, canary string) {
	t.Helper()
	dir = t.TempDir()
	canary = scanToken()
	if err := os.WriteFile(filepath.Join(dir, "app.env"), []byte("PORT=80\nGITHUB_TOKEN="+canary+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, canary
}

func TestScanCommandFormatsAndExitCodes(t *testing.T) {
	dir, canary := scanFixture(t)
	for _, format := range []string{"table", "json", "sarif"} {
		out, _, err := runScanCmd(t, nil, "--format", format, dir)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 1 || ee.msg != "" {
			t.Fatalf("%s: want silent exit 1 for findings, got %v", format, err)
		}
		if strings.Contains(out, canary) {
			t.Errorf("%s output contains the secret", format)
		}
		switch format {
		case "table":
			if !strings.Contains(out, "GitHub token") || !strings.Contains(out, "app.env:2:14") || !strings.Contains(out, "1 findings") {
				t.Errorf("table:\n%s", out)
			}
		case "json":
			var doc struct {
				Findings []discovery.Finding `json:"findings"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Findings) != 1 || doc.Findings[0].Line != 2 || !doc.Findings[0].Verified {
				t.Errorf("json (%v):\n%s", err, out)
			}
		case "sarif":
			var doc map[string]any
			if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["version"] != "2.1.0" {
				t.Errorf("sarif (%v):\n%s", err, out)
			}
		}
	}
	if _, _, err := runScanCmd(t, nil, "--exit-zero", dir); err != nil {
		t.Errorf("--exit-zero: %v", err)
	}
	out, _, _ := runScanCmd(t, nil, "--show-secrets", "--format", "json", dir)
	if !strings.Contains(out, canary) {
		t.Error("--show-secrets does not show the secret")
	}
	// Nothing found: exit 0.
	clean := t.TempDir()
	os.WriteFile(filepath.Join(clean, "a.txt"), []byte("nothing here\n"), 0o644)
	if _, _, err := runScanCmd(t, nil, clean); err != nil {
		t.Errorf("clean tree: %v", err)
	}
	// Errors are errors, not exit 1 for findings.
	for _, args := range [][]string{{"--format", "xml", dir}, {filepath.Join(dir, "missing")}, {"--config", filepath.Join(dir, "missing.yaml"), dir}} {
		_, _, err := runScanCmd(t, nil, args...)
		var ee *exitError
		if err == nil || errors.As(err, &ee) {
			t.Errorf("%v: want an error, got %v", args, err)
		}
	}
}

func TestScanCommandFingerprintKey(t *testing.T) {
	dir, _ := scanFixture(t)
	fp := func(env map[string]string, args ...string) string {
		out, _, _ := runScanCmd(t, env, append([]string{"--format", "json"}, append(args, dir)...)...)
		var doc struct {
			Findings []discovery.Finding `json:"findings"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Findings) != 1 {
			t.Fatalf("json: %v %s", err, out)
		}
		return doc.Findings[0].Fingerprint
	}
	def, env, flag := fp(nil), fp(map[string]string{"WARDEN_SCAN_KEY": "k1"}), fp(map[string]string{"WARDEN_SCAN_KEY": "k1"}, "--fingerprint-key", "k2")
	if def == env || env == flag || def == flag {
		t.Errorf("fingerprints do not follow the key: %s %s %s", def, env, flag)
	}
	if def != fp(nil) {
		t.Error("default fingerprint differs between runs")
	}
}

func TestScanCommandAllowlistsAndProgress(t *testing.T) {
	dir, _ := scanFixture(t)
	cfg := filepath.Join(t.TempDir(), "allow.yaml")
	os.WriteFile(cfg, []byte("allow:\n  rules: [github-pat]\n"), 0o644)
	if _, _, err := runScanCmd(t, nil, "--config", cfg, dir); err != nil {
		t.Errorf("--config allowlist: %v", err)
	}
	_, stderr, _ := runScanCmd(t, nil, "--progress", "always", dir)
	if !strings.Contains(stderr, "scanned 1 files") || !strings.Contains(stderr, "1 findings") {
		t.Errorf("progress: %q", stderr)
	}
	if _, stderr, _ := runScanCmd(t, nil, dir); stderr != "" {
		t.Errorf("progress shown on a non-terminal: %q", stderr)
	}
}

func TestScanCommandGitHistory(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	canary := scanToken()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.org", "GIT_COMMITTER_NAME=Dev",
			"GIT_COMMITTER_EMAIL=dev@example.org", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("init", "-q")
	os.WriteFile(filepath.Join(dir, "ci.yml"), []byte("env:\n  TOKEN: "+canary+"\n"), 0o644)
	git("add", ".")
	git("commit", "-q", "-m", "add ci")
	os.WriteFile(filepath.Join(dir, "ci.yml"), []byte("env:\n  TOKEN: ${{ secrets.TOKEN }}\n"), 0o644)
	git("commit", "-q", "-am", "use a secret")

	// The working tree is clean; history is not.
	if _, _, err := runScanCmd(t, nil, dir); err != nil {
		t.Errorf("working tree: %v", err)
	}
	for _, format := range []string{"table", "json", "sarif"} {
		out, _, err := runScanCmd(t, nil, "--git", "--format", format, dir)
		if err == nil || strings.Contains(out, canary) || !strings.Contains(out, "Dev <dev@example.org>") {
			t.Errorf("--git %s (%v):\n%s", format, err, out)
		}
	}
}
