package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warden/internal/audit"
	"warden/internal/seal"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// TestAuditArchiveCommand runs retention offline and verifies across the
// cut, with and without the archive files, on both engines.
func TestAuditArchiveCommand(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			var (
				where []string // --data DIR or --database DSN
				st    *store.Store
				err   error
			)
			dataDir := t.TempDir()
			if engine == "sqlite" {
				st, err = store.Open(ctx, store.Options{DataDir: dataDir})
				where = []string{"--data", dataDir}
			} else {
				dsn := wardentest.PostgresDSN(t)
				st, err = store.Open(ctx, store.Options{DSN: dsn})
				where = []string{"--database", dsn}
			}
			if err != nil {
				t.Fatal(err)
			}
			master := make([]byte, 32)
			rand.Read(master)
			keys, err := seal.Open(ctx, master, st)
			if err != nil {
				t.Fatal(err)
			}
			l, err := audit.Open(ctx, audit.Options{Store: st, Keyring: keys, CheckpointFile: filepath.Join(dataDir, audit.CheckpointFileName)})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 30 {
				if _, err := l.Append(ctx, audit.Event{Kind: audit.KindDecided, Actor: "identity:nhi_x", Action: "github:issues.create", Decision: "allow"}); err != nil {
					t.Fatal(err)
				}
				if i == 9 || i == 19 {
					if _, err := l.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := l.Close(ctx); err != nil { // final checkpoint at 30
				t.Fatal(err)
			}
			keys.Close()
			st.Close()
			keyEnv := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(master)}
			out := t.TempDir()

			args := func(a ...string) []string {
				a = append(append([]string{"audit"}, a...), where...)
				if a[1] == "verify" && engine == "postgres" {
					a = append(a, "--checkpoints", filepath.Join(dataDir, audit.CheckpointFileName))
				}
				return a
			}
			if o, e, code := auditCLI(t, nil, args("archive", "--out", out)...); code == 0 || !strings.Contains(e, "--before") {
				t.Fatalf("archive without --before (%d): %s %s", code, o, e)
			}
			// The cut is signed: without the master key nothing is archived.
			if o, e, code := auditCLI(t, nil, args("archive", "--before", "seq:25", "--out", out)...); code == 0 || !strings.Contains(e, "WARDEN_MASTER_KEY") {
				t.Fatalf("archive without the master key (%d): %s %s", code, o, e)
			}
			o, e, code := auditCLI(t, keyEnv, args("archive", "--before", "seq:25", "--out", out, "-o", "json")...)
			if code != 0 {
				t.Fatalf("archive (%d): %s %s", code, o, e)
			}
			var res audit.ArchiveResult
			if err := json.Unmarshal([]byte(o), &res); err != nil || res.Anchor.Seq != 20 || res.Events != 20 {
				t.Fatalf("archive result %s: %v", o, err)
			}
			first := res.Path
			o, e, code = auditCLI(t, keyEnv, args("archive", "--before", "1h", "--out", out)...)
			if code != 0 || !strings.Contains(o, "nothing archived") {
				t.Fatalf("archive with no checkpoint old enough (%d): %s %s", code, o, e)
			}

			if o, e, code := auditCLI(t, keyEnv, args("verify")...); code != 0 || !strings.Contains(o, "archived by retention up to seq 20") {
				t.Fatalf("verify after the cut (%d): %s %s", code, o, e)
			}
			if o, e, code := auditCLI(t, keyEnv, args("verify", "--archive", first, "-o", "json")...); code != 0 || !strings.Contains(o, `"archived_events": 20`) || strings.Contains(o, "warnings") {
				t.Fatalf("verify with the archive (%d): %s %s", code, o, e)
			}

			// A second cut, at the head, chains to the first.
			o, e, code = auditCLI(t, keyEnv, args("archive", "--before", "seq:1000", "--out", out)...)
			if code != 0 || !strings.Contains(o, "archived events 21 to 30") {
				t.Fatalf("second archive (%d): %s %s", code, o, e)
			}
			second := filepath.Join(out, audit.ArchiveFileName(21, 30))
			if o, e, code := auditCLI(t, nil, args("verify", "--archive", first, "--archive", second)...); code != 0 {
				t.Fatalf("verify with both archives (%d): %s %s", code, o, e)
			}

			// An archive edited after the fact is pinpointed.
			data, _ := os.ReadFile(first)
			data = []byte(strings.Replace(string(data), `"decision":"allow"`, `"decision":"deny"`, 1))
			os.WriteFile(first, data, 0o600)
			o, e, code = auditCLI(t, keyEnv, args("verify", "--archive", first, "--archive", second)...)
			if code != 1 || !strings.Contains(o, "first bad seq 1: edited") {
				t.Fatalf("verify of an edited archive (%d): %s %s", code, o, e)
			}
		})
	}
}

// The CLI never cuts past what a streaming sink has delivered, whichever
// replica runs the sink, unless told to with --ignore-sinks.
func TestAuditArchiveRespectsSinks(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := seal.Open(ctx, master, st)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, audit.Options{Store: st, Keyring: keys, CheckpointFile: filepath.Join(dataDir, audit.CheckpointFileName)})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.KindDecided, Actor: "identity:nhi_x", Action: "github:issues.create", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil { // checkpoint at 20
		t.Fatal(err)
	}
	// A sink on some replica has delivered only up to seq 5.
	if _, err := st.DB().ExecContext(ctx, `INSERT INTO audit_sink_cursors (name, seq, updated_at) VALUES ('siem', 5, 0)`); err != nil {
		t.Fatal(err)
	}
	keys.Close()
	st.Close()
	keyEnv := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(master)}
	out := t.TempDir()
	o, e, code := auditCLI(t, keyEnv, "audit", "archive", "--before", "seq:1000", "--out", out, "--data", dataDir)
	if code != 0 || !strings.Contains(o, "nothing archived") || !strings.Contains(o, `sink "siem" has delivered up to seq 5`) {
		t.Fatalf("archive held back by a sink (%d): %s %s", code, o, e)
	}
	o, e, code = auditCLI(t, keyEnv, "audit", "archive", "--before", "seq:1000", "--out", out, "--data", dataDir, "--ignore-sinks")
	if code != 0 || !strings.Contains(o, "archived events 1 to 20") {
		t.Fatalf("archive with --ignore-sinks (%d): %s %s", code, o, e)
	}
}
