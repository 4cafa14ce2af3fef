package discovery

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo is a real repository in a temporary directory.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	return r.gitAs("Alice Example", "alice@example.org", args...)
}

func (r *gitRepo) gitAs(name, email string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", r.dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email, "GIT_COMMITTER_NAME="+name,
		"GIT_COMMITTER_EMAIL="+email, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) commit(name, email, msg string, files map[string]string) string {
	r.t.Helper()
	for p, content := range files {
		full := filepath.Join(r.dir, p)
		if content == "" {
			r.gitAs(name, email, "rm", "-q", p)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.gitAs(name, email, "add", p)
	}
	r.gitAs(name, email, "commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func TestGitHistory(t *testing.T) {
	r := newGitRepo(t)
	a, b, c, e := checksummed("ghp_"), "sk_live_"+randFrom(alnum, 24), "AKIA"+randFrom(upper, 16), checksummed("ghp_")
	key := pemKey(t)
	c1 := r.commit("Alice Example", "alice@example.org", "initial", map[string]string{
		"config/app.env":   "# settings\nPORT=8080\nGITHUB_TOKEN=" + a + "\n",
		"keys/deploy.pem":  key,
		"we ird\tname.env": "T=" + e + "\n",
	})
	c2 := r.commit("Bob Builder", "bob@example.org", "rotate", map[string]string{
		"config/app.env":  "# settings\nPORT=8080\nGITHUB_TOKEN=${GITHUB_TOKEN}\n",
		"keys/deploy.pem": "",
		"billing.py":      "import stripe\n\nstripe.api_key = \"" + b + "\"\n",
	})
	r.git("checkout", "-q", "-b", "feature")
	c3 := r.commit("Carol", "carol@example.org", "feature", map[string]string{"aws.env": "AWS_ACCESS_KEY_ID=" + c + "\n"})
	r.git("checkout", "-q", "main")

	// The working tree (main) holds only b and e.
	s := New(Options{})
	wt, err := s.ScanPath(context.Background(), r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := secretsOf(wt); len(wt) != 2 || got[b].Rule == "" || got[e].Rule == "" {
		t.Errorf("working tree: %+v", wt)
	}

	hist, err := s.ScanGit(context.Background(), r.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	got := secretsOf(hist)
	check := func(secret, file string, line int, commit, author string) {
		t.Helper()
		f, ok := got[secret]
		if !ok {
			t.Errorf("%s: not found in history", file)
			return
		}
		if f.File != file || f.Line != line || f.Commit != commit || f.Author != author || f.Date.IsZero() {
			t.Errorf("%s: got %s:%d %s %q", file, f.File, f.Line, f.Commit, f.Author)
		}
	}
	check(a, "config/app.env", 3, c1, "Alice Example <alice@example.org>")
	check(b, "billing.py", 3, c2, "Bob Builder <bob@example.org>")
	check(c, "aws.env", 1, c3, "Carol <carol@example.org>")
	check(e, "we ird\tname.env", 1, c1, "Alice Example <alice@example.org>")
	pk := hist[0]
	for _, f := range hist {
		if f.Rule == "private-key" {
			pk = f
		}
	}
	if pk.Rule != "private-key" || pk.File != "keys/deploy.pem" || pk.Line != 1 || pk.EndLine != strings.Count(key, "\n") {
		t.Errorf("deleted private key: %+v", pk)
	}
	if len(hist) != 5 {
		t.Errorf("%d history findings, want 5 (each secret once, where it was added)", len(hist))
	}

	// --since: only commits not reachable from c2.
	since, err := s.ScanGit(context.Background(), r.dir, c2)
	if err != nil {
		t.Fatal(err)
	}
	if f := only(t, since); f.Commit != c3 {
		t.Errorf("since: %+v", f)
	}
	for _, bad := range []string{"--output=/tmp/x", "no-such-rev"} {
		if _, err := s.ScanGit(context.Background(), r.dir, bad); err == nil {
			t.Errorf("--since %q accepted", bad)
		}
	}
	if _, err := s.ScanGit(context.Background(), t.TempDir(), ""); err == nil {
		t.Error("history of a directory that is no repository")
	}
}

func TestGitBrokenObjectsAreSkipped(t *testing.T) {
	r := newGitRepo(t)
	a, lost, later := checksummed("ghp_"), checksummed("ghp_"), checksummed("ghp_")
	r.commit("Alice", "a@example.org", "one", map[string]string{"a.env": "T=" + a + "\n", "lost.env": "T=" + lost + "\n"})
	r.commit("Alice", "a@example.org", "two", map[string]string{"later.env": "T=" + later + "\n"})
	// Corrupt the loose object of lost.env's blob.
	blob := r.git("rev-parse", "HEAD~1:lost.env")
	obj := filepath.Join(r.dir, ".git", "objects", blob[:2], blob[2:])
	os.Chmod(obj, 0o644)
	if err := os.WriteFile(obj, []byte("this is not a zlib stream"), 0o644); err != nil {
		t.Fatal(err)
	}
	// git would otherwise read the identical working-tree file instead.
	os.Remove(filepath.Join(r.dir, "lost.env"))
	w := &warnings{}
	fs, err := New(Options{Warn: w.add}).ScanGit(context.Background(), r.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	got := secretsOf(fs)
	if len(fs) != 2 || got[a].File != "a.env" || got[later].File != "later.env" {
		t.Errorf("findings: %+v", fs)
	}
	if !strings.Contains(w.String(), "lost.env") {
		t.Errorf("broken object not reported: %q", w)
	}
}
