package discovery

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzScanBytes drives the content scanner with arbitrary input: it must not
// panic or hang, and every finding must point inside the input and carry a
// consistent fingerprint and a redacted preview.
func FuzzScanBytes(f *testing.F) {
	for _, seed := range []string{
		"GITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ012345\n",
		"password: \"Xk9#mQ2vLp!7\"\n",
		"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
		"apiVersion: v1\nkind: Secret\ndata:\n  p: c2VjcmV0LXZhbHVlLTEyMzQ1Ng==\n",
		"postgres://u:p4ss@h/db mysql://:x@y",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
		"\xff\xfe\x00token=\x80\x81",
		strings.Repeat("secret=", 200),
	} {
		f.Add("app.env", []byte(seed))
	}
	s := New(Options{})
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		lines := bytes.Count(data, []byte{'\n'}) + 1
		for _, fd := range s.ScanBytes(name, data) {
			if fd.Line < 1 || fd.Line > lines || fd.EndLine < fd.Line || fd.EndLine > lines || fd.Column < 1 {
				t.Fatalf("location %d:%d-%d outside %d lines", fd.Line, fd.Column, fd.EndLine, lines)
			}
			sec := fd.Secret.Reveal()
			if sec == "" || fd.Fingerprint != Fingerprint([]byte(DefaultFingerprintKey), sec) {
				t.Fatalf("secret/fingerprint mismatch for %s", fd.Rule)
			}
			if !strings.HasSuffix(fd.Preview, "*****") || (len(sec) >= 8 && strings.Contains(fd.Preview, sec)) {
				t.Fatalf("preview %q", fd.Preview)
			}
			if ruleByID[fd.Rule] == nil {
				t.Fatalf("unknown rule %q", fd.Rule)
			}
		}
	})
}

// FuzzHistoryParse feeds arbitrary bytes to the git log parser as if git had
// printed them.
func FuzzHistoryParse(f *testing.F) {
	f.Add([]byte("\x1ecommit abc\x1fA <a@b>\x1f2024-01-01T00:00:00Z\ndiff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+T=ghp_0123456789abcdefghijABCDEFGHIJ012345\n+++ x\n"))
	f.Add([]byte("+++ \"b/a\\tb\\303\\251\"\t\n@@ -1 +1 @@\n-x\n+y\n@@ -5,0 +99999999999999999999,3 @@\n+a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &historyScan{s: New(Options{}), col: &collector{}, jobs: make(chan historyJob), seen: map[string]bool{}}
		h.wg.Add(1)
		go h.worker()
		err := h.parse(context.Background(), bytes.NewReader(data))
		close(h.jobs)
		h.wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
	})
}
