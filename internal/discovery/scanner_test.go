package discovery

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// warnings collects what a scan reported as skipped.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) add(loc string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, loc+": "+err.Error())
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.list, "\n")
}

func write(t *testing.T, root, name, content string) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func scanDir(t *testing.T, opts Options, root string) ([]Finding, *warnings) {
	t.Helper()
	w := &warnings{}
	opts.Warn = w.add
	fs, err := New(opts).ScanPath(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return fs, w
}

func secretsOf(fs []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range fs {
		m[f.Secret.Reveal()] = f
	}
	return m
}

func TestScanDirectoryTreeInParallel(t *testing.T) {
	root := t.TempDir()
	var want []string
	for i := range 40 {
		tok := checksummed("ghp_")
		want = append(want, tok)
		write(t, root, filepath.Join("pkg", string(rune('a'+i%5)), "f"+string(rune('a'+i))+".go"), "package x\n\nconst t = \""+tok+"\"\n")
	}
	fs, w := scanDir(t, Options{Workers: 2}, root)
	got := secretsOf(fs)
	for _, tok := range want {
		if f, ok := got[tok]; !ok || f.Line != 3 || f.Column != 12 {
			t.Errorf("token missing or misplaced: %+v", f)
		}
	}
	if len(fs) != len(want) || w.String() != "" {
		t.Errorf("%d findings, warnings %q", len(fs), w)
	}
	// Sorted by file.
	for i := 1; i < len(fs); i++ {
		if fs[i-1].File > fs[i].File {
			t.Fatal("findings not sorted")
		}
	}
}

func TestBinaryFilesAreSkipped(t *testing.T) {
	root := t.TempDir()
	tok := checksummed("ghp_")
	write(t, root, "blob.bin", "\x00\x01\x02"+tok+"\x00")
	write(t, root, "text.txt", tok+"\n")
	fs, _ := scanDir(t, Options{}, root)
	if f := only(t, fs); !strings.HasSuffix(f.File, "text.txt") {
		t.Errorf("finding in %s", f.File)
	}
}

func TestLargeFilesAreStreamedAcrossChunks(t *testing.T) {
	// Secrets placed on both sides of every chunk boundary are each found
	// once, with the right line, without holding the file in memory.
	root := t.TempDir()
	filler := strings.Repeat("x = 1 # nothing to see in this line of filler text\n", 1)
	var b strings.Builder
	want := map[string]int{}
	line := 1
	for b.Len() < 3*chunkSize {
		for b.Len()%chunkSize < chunkSize-overlap-4096 || b.Len()%chunkSize > chunkSize-200 {
			b.WriteString(filler)
			line++
			if b.Len() > 3*chunkSize {
				break
			}
		}
		for range 60 {
			tok := checksummed("ghp_")
			want[tok] = line
			b.WriteString("token = " + tok + "\n")
			line++
			for range 20 {
				b.WriteString(filler)
				line++
			}
		}
	}
	write(t, root, "big.log", b.String())
	fs, _ := scanDir(t, Options{}, root)
	got := secretsOf(fs)
	if len(fs) != len(want) {
		t.Errorf("%d findings, want %d", len(fs), len(want))
	}
	for tok, ln := range want {
		if f, ok := got[tok]; !ok || f.Line != ln || f.Column != 9 {
			t.Fatalf("token at line %d: got %+v", ln, f)
		}
	}
}

func TestVeryLongLine(t *testing.T) {
	root := t.TempDir()
	tok := checksummed("ghp_")
	pad := strings.Repeat("a=b;", (chunkSize+overlap)/4) // one line longer than a chunk
	write(t, root, "min.js", pad+"var t=\""+tok+"\";"+pad+"\nnext\n")
	f := only(t, func() []Finding { fs, _ := scanDir(t, Options{}, root); return fs }())
	if f.Line != 1 || f.Column != len(pad)+8 || f.Secret.Reveal() != tok {
		t.Errorf("got line %d col %d, want 1:%d", f.Line, f.Column, len(pad)+8)
	}
}

func TestNonUTF8Text(t *testing.T) {
	tok := checksummed("ghp_")
	text := "caf\xe9 \xff\xfe = \"" + tok + "\"\n"
	f := only(t, New(Options{}).ScanBytes("latin1.txt", []byte(text)))
	if f.Column != 12 {
		t.Errorf("column %d, want 12 (invalid bytes count one each)", f.Column)
	}
	// File names that are not UTF-8 or hold control characters cannot
	// corrupt the table.
	var out bytes.Buffer
	f.File = "bad\x1b[2Jname\xff"
	if err := WriteTable(&out, []Finding{f}, Summary{}, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\x1b") || !strings.Contains(out.String(), `bad\x1b[2Jname`) {
		t.Errorf("table: %q", out.String())
	}
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for name, data := range files {
		w, err := z.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tgzOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for name, data := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

func TestArchives(t *testing.T) {
	root := t.TempDir()
	a, b, c := checksummed("ghp_"), checksummed("ghp_"), checksummed("ghp_")
	inner := zipOf(t, map[string][]byte{"deep/.env": []byte("T=" + c + "\n")})
	write(t, root, "bundle.zip", string(zipOf(t, map[string][]byte{"config/app.env": []byte("T=" + a + "\n"), "nested.zip": inner})))
	write(t, root, "release.tar.gz", string(tgzOf(t, map[string][]byte{"../../etc/secret.txt": []byte("T=" + b + "\n")})))

	// Off by default: archives are binary.
	if fs, _ := scanDir(t, Options{}, root); len(fs) != 0 {
		t.Fatalf("archives unpacked without being asked: %+v", fs)
	}
	fs, w := scanDir(t, Options{Archives: true}, root)
	got := secretsOf(fs)
	if got[a].File != filepath.ToSlash(root)+"/bundle.zip!config/app.env" || got[a].Line != 1 {
		t.Errorf("zip entry: %+v", got[a])
	}
	if got[c].File != filepath.ToSlash(root)+"/bundle.zip!nested.zip!deep/.env" {
		t.Errorf("nested zip entry: %+v", got[c])
	}
	if !strings.HasSuffix(got[b].File, "release.tar.gz!release.tar!etc/secret.txt") {
		t.Errorf("tar.gz entry (names are cleaned, never extracted): %+v", got[b])
	}
	if w.String() != "" {
		t.Errorf("warnings: %s", w)
	}
	// Depth limit: the nested zip is beyond a depth of 1.
	fs, w = scanDir(t, Options{Archives: true, Limits: Limits{MaxArchiveDepth: 1}}, root)
	if _, ok := secretsOf(fs)[c]; ok || !strings.Contains(w.String(), "nested.zip") {
		t.Errorf("depth limit not applied: %d findings, warnings %q", len(fs), w)
	}
}

func TestZipBombIsBounded(t *testing.T) {
	root := t.TempDir()
	tok := checksummed("ghp_")
	// 64 MiB of text compress to about 64 KiB; the limit stops unpacking
	// at 1 MiB and the scan goes on to the other files.
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	w, _ := z.Create("zeros.txt")
	zeros := bytes.Repeat([]byte("a"), 1<<20)
	for range 64 {
		w.Write(zeros)
	}
	w2, _ := z.Create("later.txt")
	w2.Write([]byte(tok))
	z.Close()
	write(t, root, "bomb.zip", b.String())
	write(t, root, "ok.txt", "t="+tok+"\n")
	s := New(Options{Archives: true, Limits: Limits{MaxArchiveBytes: 1 << 20}, Warn: func(string, error) {}})
	fs, err := s.ScanPath(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if f := only(t, fs); !strings.HasSuffix(f.File, "ok.txt") {
		t.Errorf("finding in %s", f.File)
	}
	if p := s.Progress(); p.Bytes > 3<<20 {
		t.Errorf("read %d bytes from a bomb limited to 1 MiB", p.Bytes)
	}
	var warned []string
	s = New(Options{Archives: true, Limits: Limits{MaxArchiveBytes: 1 << 20}, Warn: func(l string, err error) {
		if errors.Is(err, ErrArchiveLimit) {
			warned = append(warned, l)
		}
	}})
	s.ScanPath(context.Background(), root)
	if len(warned) != 1 || !strings.HasSuffix(warned[0], "bomb.zip") {
		t.Errorf("limit warnings: %q", warned)
	}
}

func TestSymlinksAreNeverFollowed(t *testing.T) {
	outside := t.TempDir()
	outTok := checksummed("ghp_")
	write(t, outside, "secret.env", "T="+outTok+"\n")
	root := t.TempDir()
	inTok := checksummed("ghp_")
	write(t, root, "real/app.env", "T="+inTok+"\n")
	for _, l := range []struct{ target, name string }{
		{outside, "out-dir"},                          // directory outside the root
		{filepath.Join(outside, "secret.env"), "out"}, // file outside the root
		{root, "loop"},                                // loop to the root
		{"loop2", filepath.Join("real", "loop2")},     // self-loop
		{filepath.Join(root, "real"), "real-again"},   // inside, would double-count
		{"/nonexistent/x", "dangling"},
	} {
		if err := os.Symlink(l.target, filepath.Join(root, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	fs, w := scanDir(t, Options{}, root)
	f := only(t, fs)
	if f.Secret.Reveal() != inTok || w.String() != "" {
		t.Errorf("got %+v, warnings %q", f, w)
	}
}

func TestSpecialFilesDoNotHang(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	tok := checksummed("ghp_")
	write(t, root, "a.env", "T="+tok+"\n")
	fs, _ := scanDir(t, Options{}, root)
	only(t, fs)
}

func TestUnreadableFilesAreReportedAndSkipped(t *testing.T) {
	root := t.TempDir()
	tok := checksummed("ghp_")
	write(t, root, "a/ok.env", "T="+tok+"\n")
	bad := write(t, root, "b/locked.env", "T="+checksummed("ghp_")+"\n")
	opts := Options{}
	if os.Geteuid() == 0 {
		// root reads any file whatever its mode: inject the fault instead.
		opts.open = func(name string) (*os.File, error) {
			if name == bad {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
			}
			return openNoFollow(name)
		}
	} else if err := os.Chmod(bad, 0); err != nil {
		t.Fatal(err)
	}
	fs, w := scanDir(t, opts, root)
	if f := only(t, fs); f.Secret.Reveal() != tok {
		t.Errorf("wrong finding %+v", f)
	}
	if !strings.Contains(w.String(), "b/locked.env") || !strings.Contains(w.String(), "permission denied") {
		t.Errorf("warnings: %q", w)
	}
}

func TestIgnoreFileAndConfig(t *testing.T) {
	root := t.TempDir()
	toks := []string{checksummed("ghp_"), checksummed("ghp_"), checksummed("ghp_"), checksummed("ghp_"), "AKIA" + randFrom(upper, 16)}
	write(t, root, "vendor/lib/a.env", "T="+toks[0]+"\n")
	write(t, root, "src/b.min.js", "T="+toks[1]+"\n")
	write(t, root, "src/c.env", "T="+toks[2]+"\n")
	write(t, root, "src/d.env", "T="+toks[3]+"\nA="+toks[4]+"\n")
	fp := Fingerprint([]byte(DefaultFingerprintKey), toks[2])
	write(t, root, IgnoreFileName, "# third-party code\nvendor/\n*.min.js\nfingerprint:"+fp+"\n")
	fs, _ := scanDir(t, Options{}, root)
	got := secretsOf(fs)
	if len(fs) != 2 || got[toks[3]].Rule == "" || got[toks[4]].Rule == "" {
		t.Errorf("after .wardenignore: %+v", fs)
	}
	cfg := write(t, t.TempDir(), "scan.yaml", "allow:\n  rules: [aws-access-key-id]\n  paths: ['src/d.*']\n")
	a, err := LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fs, _ := scanDir(t, Options{Allow: a}, root); len(fs) != 0 {
		t.Errorf("after config: %+v", fs)
	}
	bad := write(t, t.TempDir(), "scan.yaml", "allow:\n  rule: [aws-access-key-id]\n")
	if _, err := LoadConfig(bad); err == nil {
		t.Error("misspelt key accepted")
	}
	if _, err := ParseIgnore([]byte("fingerprint:abc\n")); err == nil {
		t.Error("short fingerprint accepted")
	}
}

func TestGlobs(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"*.min.js", "web/dist/app.min.js", true},
		{"vendor/", "vendor/", true},
		{"vendor/", "a/vendor/x.go", true},
		{"vendor/", "vendor", false},
		{"docs/**/*.md", "docs/a/b/c.md", true},
		{"docs/**/*.md", "docs/c.md", true},
		{"docs/**/*.md", "src/docs/c.md", false},
		{"/build", "build/out.txt", true},
		{"src/*.env", "src/a/b.env", false},
		{"testdata", "pkg/testdata/x.json", true},
		{"**/fixtures/**", "a/fixtures/b/c", true},
	} {
		if got := matchGlob(c.pattern, c.path); got != c.want {
			t.Errorf("matchGlob(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}
