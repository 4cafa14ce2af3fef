package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warden"
	"warden/internal/seal"
	"warden/internal/store"
)

func TestKeyringRotate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldKey, newKey := seal.GenerateMasterKey(), seal.GenerateMasterKey()

	// A keyring under the old key, with a sealed value.
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	k, err := seal.Open(ctx, oldKey, st)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("payload"), []byte("test:1"))
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	st.Close()

	newFile := filepath.Join(dir, "new.key")
	if err := os.WriteFile(newFile, []byte(seal.EncodeMasterKey(newKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runKR := func(env map[string]string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"keyring", "rotate"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	oldEnv := map[string]string{"WARDEN_MASTER_KEY": seal.EncodeMasterKey(oldKey)}

	// Refusals change nothing.
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"no location":   {oldEnv, []string{"--new-key-file", newFile}, "exactly one of --data"},
		"both":          {oldEnv, []string{"--data", dir, "--database", "postgres://x@y/z", "--new-key-file", newFile}, "exactly one of --data"},
		"no old key":    {map[string]string{}, []string{"--data", dir, "--new-key-file", newFile}, "WARDEN_MASTER_KEY"},
		"no new key":    {oldEnv, []string{"--data", dir}, "new master key"},
		"same key":      {map[string]string{"WARDEN_MASTER_KEY": seal.EncodeMasterKey(oldKey), "WARDEN_NEW_MASTER_KEY": seal.EncodeMasterKey(oldKey)}, []string{"--data", dir}, "same"},
		"wrong old key": {map[string]string{"WARDEN_MASTER_KEY": seal.EncodeMasterKey(seal.GenerateMasterKey())}, []string{"--data", dir, "--new-key-file", newFile}, "wrong old key"},
	} {
		out, err := runKR(c.env, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Fatalf("%s: want an error mentioning %q, got %v: %s", name, c.want, err, out)
		}
		if strings.Contains(out, seal.EncodeMasterKey(oldKey)) || strings.Contains(out, seal.EncodeMasterKey(newKey)) {
			t.Fatalf("%s: a master key was printed", name)
		}
	}

	out, err := runKR(oldEnv, "--data", dir, "--new-key-file", newFile)
	if err != nil || !strings.Contains(out, "re-wrapped 1 of 1 keys") {
		t.Fatalf("rotate: %v: %s", err, out)
	}
	// Idempotent.
	out, err = runKR(oldEnv, "--data", dir, "--new-key-file", newFile)
	if err != nil || !strings.Contains(out, "re-wrapped 0 of 1 keys") {
		t.Fatalf("second rotate: %v: %s", err, out)
	}

	st, err = store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := seal.Open(ctx, oldKey, st); !warden.IsCode(err, warden.CodeInvalid) {
		t.Fatalf("old key still opens the keyring: %v", err)
	}
	k, err = seal.Open(ctx, newKey, st)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if p, err := k.Open(sealed, []byte("test:1")); err != nil || string(p) != "payload" {
		t.Fatalf("sealed data after rotation: %v", err)
	}
}

// TestServeWithPreviousMasterKey: during a zero-downtime rotation a server
// started with the new key and WARDEN_MASTER_KEY_PREVIOUS=<old> opens a
// keyring still wrapped by the old key; without the previous key it
// refuses.
func TestServeWithPreviousMasterKey(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := seal.EncodeMasterKey(seal.GenerateMasterKey()), seal.EncodeMasterKey(seal.GenerateMasterKey())
	env := map[string]string{"WARDEN_MASTER_KEY": oldKey, "WARDEN_ROOT_TOKEN": "0123456789abcdef0123"}
	if !t.Run("old key", func(t *testing.T) { startServe(t, env, "--data", dir) }) {
		t.Fatal("first start failed")
	}
	env["WARDEN_MASTER_KEY"] = newKey
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data", dir, "--listen", freeAddr(t)}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(out.String(), "master key") {
		t.Fatalf("new key alone accepted before the rotation: %v %s", err, out.String())
	}
	env["WARDEN_MASTER_KEY_PREVIOUS"] = oldKey
	if !t.Run("new key with previous", func(t *testing.T) { startServe(t, env, "--data", dir) }) {
		t.Fatal("start with the previous key failed")
	}
	env["WARDEN_MASTER_KEY_PREVIOUS"] = "not-base64!"
	out.Reset()
	err = run(context.Background(), []string{"serve", "--data", dir, "--listen", freeAddr(t)}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(out.String(), "WARDEN_MASTER_KEY_PREVIOUS") {
		t.Fatalf("bad previous key: %v %s", err, out.String())
	}
}
