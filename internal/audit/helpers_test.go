package audit_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"warden/internal/audit"
	"warden/internal/seal"
	"warden/internal/store"
)

var ctx = context.Background()

// env is one audit log on a real store with a real keyring.
type env struct {
	st     *store.Store
	keys   *seal.Keyring
	master []byte
	file   string
	log    *audit.Log
	opts   audit.Options
}

func newEnv(t testing.TB, st *store.Store, tweak ...func(*audit.Options)) *env {
	t.Helper()
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := seal.Open(ctx, master, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	e := &env{st: st, keys: keys, master: master, file: filepath.Join(t.TempDir(), audit.CheckpointFileName)}
	e.opts = audit.Options{Store: st, Keyring: keys, CheckpointFile: e.file}
	for _, f := range tweak {
		f(&e.opts)
	}
	e.open(t)
	return e
}

// open (re)opens the log with the env's options; the old one must be closed.
func (e *env) open(t testing.TB) {
	t.Helper()
	l, err := audit.Open(ctx, e.opts)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	e.log = l
	t.Cleanup(func() { l.Close(ctx) })
}

func (e *env) close(t testing.TB) {
	t.Helper()
	if err := e.log.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (e *env) append(t testing.TB, ev audit.Event) audit.Receipt {
	t.Helper()
	r, err := e.log.Append(ctx, ev)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return r
}

func (e *env) appendN(t testing.TB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e.append(t, decided(i))
	}
}

func decided(i int) audit.Event {
	return audit.Event{
		Kind: audit.KindDecided, Actor: "identity:nhi_agent", Identity: "nhi_agent", Action: "github:issues.create",
		Resource: "owner=acme,repo=site", Decision: "allow", Code: "allowed", Policy: "support", Rule: "r" + string(rune('a'+i%26)),
		Reason: "allowed by rule", Request: audit.Request{Method: "POST", Path: "/proxy/github/repos/acme/site/issues", ClientIP: "10.0.0.7", UserAgent: "agent/1.0", Bytes: 120},
	}
}

// verify runs audit.Verify with the keyring's keys and the env's file.
func (e *env) verify(t testing.TB) audit.Report {
	t.Helper()
	o := audit.VerifyOptions{PublicKey: e.keys.PublicKey}
	if cps, _, err := audit.ReadCheckpointFile(e.file); err == nil {
		o.Checkpoints = cps
	}
	rep, err := audit.Verify(ctx, e.st, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func mustOK(t testing.TB, rep audit.Report) {
	t.Helper()
	if !rep.OK || rep.Problem != nil {
		t.Fatalf("chain does not verify: %+v", rep.Problem)
	}
}
