package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"warden"
	"warden/internal/seal"
)

func TestParseMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0xff, 0x3e}, 11)[:32] // bytes whose std and url encodings differ
	for name, text := range map[string]string{
		"std":            base64.StdEncoding.EncodeToString(key),
		"raw std":        base64.RawStdEncoding.EncodeToString(key),
		"url":            base64.URLEncoding.EncodeToString(key),
		"raw url":        base64.RawURLEncoding.EncodeToString(key),
		"with newline":   base64.StdEncoding.EncodeToString(key) + "\n",
		"with spaces":    "  " + base64.RawURLEncoding.EncodeToString(key) + "\t",
		"EncodeMasterKe": seal.EncodeMasterKey(key),
	} {
		got, err := seal.ParseMasterKey(text)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("%s: ParseMasterKey = %x, %v", name, got, err)
		}
	}
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 33))
	for name, text := range map[string]string{
		"empty":       "",
		"blank":       " \n",
		"not base64":  "this is not base64 at all!",
		"16 bytes":    short,
		"33 bytes":    long,
		"all zeros":   base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"hex instead": strings.Repeat("ab", 32),
	} {
		got, err := seal.ParseMasterKey(text)
		if got != nil || !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("%s: ParseMasterKey = %x, %v; want code invalid", name, got, err)
		}
		if !strings.Contains(err.Error(), "WARDEN_MASTER_KEY") {
			t.Fatalf("%s: error %q does not name WARDEN_MASTER_KEY", name, err)
		}
		if strings.TrimSpace(text) != "" && strings.Contains(err.Error(), strings.TrimSpace(text)) {
			t.Fatalf("%s: error echoes the value", name)
		}
	}
}

func TestGenerateMasterKey(t *testing.T) {
	a, b := seal.GenerateMasterKey(), seal.GenerateMasterKey()
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("GenerateMasterKey gave %d bytes, distinct: %v", len(a), !bytes.Equal(a, b))
	}
	if got, err := seal.ParseMasterKey(seal.EncodeMasterKey(a)); err != nil || !bytes.Equal(got, a) {
		t.Fatal("a generated key does not survive encode and parse")
	}
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadMasterKeyFile(t *testing.T) {
	key := seal.GenerateMasterKey()
	path := writeKeyFile(t, seal.EncodeMasterKey(key)+"\n", 0o600)
	if got, err := seal.ReadMasterKeyFile(path); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadMasterKeyFile = %v", err)
	}
	if got, err := seal.ReadMasterKeyFile(writeKeyFile(t, seal.EncodeMasterKey(key), 0o400)); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("read-only owner file: %v", err)
	}
	if runtime.GOOS != "windows" {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o602, 0o644, 0o666} {
			p := writeKeyFile(t, seal.EncodeMasterKey(key), mode)
			got, err := seal.ReadMasterKeyFile(p)
			if got != nil || !warden.IsCode(err, warden.CodeInvalid) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("mode %04o: %v, want a refusal that says chmod 600", mode, err)
			}
		}
	}
	bad := writeKeyFile(t, "not a key\n", 0o600)
	if _, err := seal.ReadMasterKeyFile(bad); !warden.IsCode(err, warden.CodeInvalid) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("garbage file: %v, want an error naming the file", err)
	}
	if _, err := seal.ReadMasterKeyFile(writeKeyFile(t, strings.Repeat("A", 5000), 0o600)); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("huge file: %v", err)
	}
	if _, err := seal.ReadMasterKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.ReadMasterKeyFile(dir); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("directory: %v", err)
	}
}

func TestLoadOrCreateDevKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "warden-data", "nested")
	key, created, err := seal.LoadOrCreateDevKey(dir)
	if err != nil || !created || len(key) != 32 {
		t.Fatalf("first call = %d bytes, created %v, %v", len(key), created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, seal.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key has mode %04o, want 0600", fi.Mode().Perm())
	}
	again, created, err := seal.LoadOrCreateDevKey(dir)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("second call: created %v, same key %v, %v", created, bytes.Equal(again, key), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only master.key (no temp files)", len(entries))
	}
	if _, _, err := seal.LoadOrCreateDevKey(""); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("empty data dir: %v", err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(filepath.Join(dir, seal.DevKeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := seal.LoadOrCreateDevKey(dir); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("world-readable dev key: %v, want a refusal", err)
		}
	}
}

func TestLoadOrCreateDevKeyRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], created[i], errs[i] = seal.LoadOrCreateDevKey(dir) })
	}
	wg.Wait()
	makers := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("racing dev-mode starts got different keys")
		}
		if created[i] {
			makers++
		}
	}
	if makers != 1 {
		t.Fatalf("%d racers report creating the key, want 1", makers)
	}
}
