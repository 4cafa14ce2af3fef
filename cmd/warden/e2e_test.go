package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/apitype"
	"warden/client"
	"warden/internal/wardentest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServe runs `warden serve` through run() and waits for /readyz.
func startServe(t *testing.T, env map[string]string, args ...string) (addr string, out *syncBuf) {
	t.Helper()
	addr = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", addr}, args...), func(k string) string { return env[k] }, strings.NewReader(""), out, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr, out
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not ready:\n%s", out.String())
	return "", nil
}

// cliRun runs a client command through run() and returns its stdout.
func cliRun(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return out.String(), err
}

func TestEndToEnd(t *testing.T) {
	engines := map[string]func(t *testing.T) []string{
		"sqlite":   func(t *testing.T) []string { return []string{"--data", t.TempDir()} },
		"postgres": func(t *testing.T) []string { return []string{"--database", wardentest.PostgresDSN(t)} },
	}
	for name, args := range engines {
		t.Run(name, func(t *testing.T) {
			root := warden.NewKey(warden.KeyPrefixAdmin)
			env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), "WARDEN_ROOT_TOKEN": root}
			addr, _ := startServe(t, env, args(t)...)
			admin := map[string]string{"WARDEN_ADDR": "http://" + addr, "WARDEN_TOKEN": root}

			// Create an identity and a key with the CLI.
			out, err := cliRun(t, admin, "identity", "create", "support-agent", "--type", "ai_agent", "--owner", "alice@example.com", "--label", "team=support", "-o", "json")
			if err != nil {
				t.Fatalf("identity create: %v", err)
			}
			var id apitype.Identity
			if err := json.Unmarshal([]byte(out), &id); err != nil || id.Status != "active" || !strings.HasPrefix(id.ID, "nhi_") {
				t.Fatalf("created: %s %v", out, err)
			}
			out, err = cliRun(t, admin, "key", "create", "support-agent", "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			var key apitype.KeyCreated
			_ = json.Unmarshal([]byte(out), &key)
			if _, ok := warden.ParseKey(key.Key); !ok {
				t.Fatalf("key: %s", out)
			}

			// Token and whoami, as an agent would.
			agentEnv := map[string]string{"WARDEN_ADDR": "http://" + addr, "WARDEN_TOKEN": key.Key}
			tokOut, err := cliRun(t, agentEnv, "token")
			if err != nil {
				t.Fatal(err)
			}
			access := strings.TrimSpace(tokOut)
			agent := client.New("http://"+addr, access)
			who, err := agent.Whoami(context.Background())
			if err != nil || who.ID != id.ID {
				t.Fatalf("whoami: %v", err)
			}

			// Suspend: the very next request is refused.
			if _, err := cliRun(t, admin, "identity", "suspend", "support-agent", "--reason", "e2e"); err != nil {
				t.Fatal(err)
			}
			_, err = agent.Whoami(context.Background())
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 403 || ce.Problem.Code != "identity_suspended" {
				t.Fatalf("after suspend: %v", err)
			}
			if _, err := cliRun(t, agentEnv, "token"); err == nil {
				t.Fatal("suspended identity got a token")
			}
			// Resume: works again with the same token.
			if _, err := cliRun(t, admin, "identity", "resume", "support-agent"); err != nil {
				t.Fatal(err)
			}
			if _, err := agent.Whoami(context.Background()); err != nil {
				t.Fatalf("after resume: %v", err)
			}
			// Decommission: final.
			if _, err := cliRun(t, admin, "identity", "delete", "support-agent", "--reason", "retired"); err != nil {
				t.Fatal(err)
			}
			if _, err := agent.Whoami(context.Background()); err == nil {
				t.Fatal("decommissioned identity still authenticates")
			}
			out, err = cliRun(t, admin, "identity", "get", "support-agent")
			if err != nil || !strings.Contains(out, "decommissioned") {
				t.Fatalf("record must stay: %s %v", out, err)
			}
		})
	}
}

func TestServeRefusesWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"no master key":  {map[string]string{"WARDEN_ROOT_TOKEN": "0123456789abcdef0123"}, "WARDEN_MASTER_KEY"},
		"bad master key": {map[string]string{"WARDEN_MASTER_KEY": "c2hvcnQ=", "WARDEN_ROOT_TOKEN": "0123456789abcdef0123"}, "32 random bytes"},
		"no root token":  {map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))}, "WARDEN_ROOT_TOKEN"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"serve", "--data", dir, "--listen", freeAddr(t)}, func(k string) string { return c.env[k] }, strings.NewReader(""), &out, &out)
			if err == nil || !strings.Contains(out.String(), c.want) {
				t.Fatalf("got %v; output %q; want mention of %q", err, out.String(), c.want)
			}
		})
	}
}

func TestServeRefusesWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)), "WARDEN_ROOT_TOKEN": "0123456789abcdef0123"}
	// First start creates the keyring with key 1.
	sub := t.Run("first", func(t *testing.T) { startServe(t, env, "--data", dir) })
	if !sub {
		t.Fatal("first start failed")
	}
	env["WARDEN_MASTER_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data", dir, "--listen", freeAddr(t)}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(out.String(), "master key") {
		t.Fatalf("wrong key accepted: %v %s", err, out.String())
	}
}

func TestDevModeRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"WARDEN_ROOT_TOKEN": "dev-root-token-0123456789"}
	var keyFile []byte
	t.Run("first", func(t *testing.T) {
		addr, out := startServe(t, env, "--dev", "--data", dir)
		if !strings.Contains(out.String(), "dev-root-token-0123456789") {
			t.Errorf("banner lacks root token: %s", out.String())
		}
		c := client.New("http://"+addr, env["WARDEN_ROOT_TOKEN"])
		if _, err := c.GetIdentity(context.Background(), "example-agent"); err != nil {
			t.Fatalf("example identity: %v", err)
		}
		st, err := os.Stat(dir + "/master.key")
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("master key file: %v %v", st, err)
		}
		keyFile, _ = os.ReadFile(dir + "/master.key")
	})
	t.Run("restart", func(t *testing.T) {
		addr, _ := startServe(t, env, "--dev", "--data", dir)
		c := client.New("http://"+addr, env["WARDEN_ROOT_TOKEN"])
		if _, err := c.GetIdentity(context.Background(), "example-agent"); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		again, _ := os.ReadFile(dir + "/master.key")
		if !bytes.Equal(again, keyFile) {
			t.Fatal("dev master key changed across restarts")
		}
	})
}

func TestHelpExplainsCommands(t *testing.T) {
	out, err := cliRun(t, nil, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"serve", "identity", "key", "token", "whoami", "admin-token", "completion"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %s", c)
		}
	}
	out, _ = cliRun(t, nil, "completion", "bash")
	if !strings.Contains(out, "bash completion") {
		t.Error("no bash completion")
	}
}
