package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/audit"
	"warden/internal/store"
	"warden/internal/wardentest"
)

func auditCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), exitCode(err)
}

func TestAuditCommands(t *testing.T) {
	master := make([]byte, 32)
	rand.Read(master)
	s := wardentest.StartServer(t, wardentest.ServerOptions{MasterKey: master})
	if _, err := s.Root.CreateIdentity(context.Background(), apitype.CreateIdentity{Name: "cli-agent", Type: "ai_agent", Owner: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WARDEN_ADDR": s.URL, "WARDEN_TOKEN": s.RootToken}

	var out string
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out, "identity.create") && time.Now().Before(deadline) {
		var code int
		out, _, code = auditCLI(t, env, "audit", "query", "--kind", "admin.change", "--identity", "cli-agent")
		if code != 0 {
			t.Fatalf("audit query exit %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "identity.create") || !strings.Contains(out, "SEQ") {
		t.Fatalf("audit query output:\n%s", out)
	}
	out, _, code := auditCLI(t, env, "audit", "export", "--format", "ocsf", "--kind", "admin.change")
	if code != 0 || !strings.Contains(out, `"class_uid":3004`) {
		t.Fatalf("export (%d): %s", code, out)
	}
	s.Stop() // final checkpoint

	dir := s.DataDir
	out, errOut, code := auditCLI(t, nil, "audit", "verify", "--data", dir)
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(lastLine(out)), "ok:") || !strings.Contains(out, "not pinned") {
		t.Fatalf("verify of a clean log (%d): %s %s", code, out, errOut)
	}
	keyEnv := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(master)}
	if out, _, code := auditCLI(t, keyEnv, "audit", "verify", "--data", dir, "-o", "json"); code != 0 || strings.Contains(out, "not pinned") || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("verify with the keyring (%d): %s", code, out)
	}
	file, _, _ := audit.ReadCheckpointFile(filepath.Join(dir, audit.CheckpointFileName))
	pin := file[0].KeyID + "=" + base64.StdEncoding.EncodeToString(file[0].PublicKey)
	if _, _, code := auditCLI(t, nil, "audit", "verify", "--data", dir, "--public-key", pin); code != 0 {
		t.Fatalf("verify with the right pinned key: exit %d", code)
	}
	other := make([]byte, 32)
	wrongPin := file[0].KeyID + "=" + base64.StdEncoding.EncodeToString(other)
	if out, _, code := auditCLI(t, nil, "audit", "verify", "--data", dir, "--public-key", wrongPin); code != 1 || !strings.Contains(out, "bad_signature") {
		t.Fatalf("verify with a wrong pinned key (%d): %s", code, out)
	}
	if _, errOut, code := auditCLI(t, nil, "audit", "verify", "--data", filepath.Join(dir, "nothing-here")); code == 0 || !strings.Contains(errOut, "no Warden database") {
		t.Fatalf("verify of a missing dir: %d %s", code, errOut)
	}

	// Offline export needs no server.
	if out, _, code := auditCLI(t, nil, "audit", "export", "--data", dir, "--format", "jsonl", "--identity", "cli-agent"); code != 0 || !strings.Contains(out, "identity.create") {
		t.Fatalf("offline export (%d): %s", code, out)
	}

	// Tamper: the command names the first bad seq and exits 1.
	st, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st.DB().Exec(`DROP TRIGGER audit_events_no_update`)
	if _, err := st.DB().Exec(`UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, errOut, code = auditCLI(t, keyEnv, "audit", "verify", "--data", dir, "-o", "json")
	var res struct {
		OK          bool  `json:"ok"`
		FirstBadSeq int64 `json:"first_bad_seq"`
		Problem     struct{ Kind string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if code != 1 || res.OK || res.FirstBadSeq != 1 || res.Problem.Kind != "edited" || !strings.Contains(errOut, "first bad seq 1") {
		t.Fatalf("verify of an edited log (%d): %s %s", code, out, errOut)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
