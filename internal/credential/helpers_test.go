package credential_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/credential"
	"warden/internal/seal"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var admin = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Roles: []string{warden.RoleAdmin}}

// clock is the injectable clock: tests move it, nothing sleeps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// lockedBuffer collects log output from concurrent goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	st    *store.Store
	keys  *seal.Keyring
	clock *clock
	logs  *lockedBuffer
	svc   *credential.Service
}

// newEnv builds a vault on a fresh SQLite store with a real keyring; mod
// adjusts the options.
func newEnv(t testing.TB, mod func(*credential.Options)) *env {
	t.Helper()
	st := wardentest.SQLite(t)
	return newEnvOn(t, st, mod)
}

func newEnvOn(t testing.TB, st *store.Store, mod func(*credential.Options)) *env {
	t.Helper()
	keys, err := seal.Open(ctx, seal.GenerateMasterKey(), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	e := &env{st: st, keys: keys, clock: newClock(), logs: &lockedBuffer{}}
	o := credential.Options{Store: st, Sealer: keys, Now: e.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&o)
	}
	e.svc = credential.New(o)
	t.Cleanup(e.svc.Wait)
	return e
}

func (e *env) create(t testing.TB, in credential.CreateInput) *credential.Credential {
	t.Helper()
	c, err := e.svc.Create(ctx, admin, in)
	if err != nil {
		t.Fatalf("create %s: %v", in.Name, err)
	}
	return c
}

func wantCode(t testing.TB, err error, code warden.Code) {
	t.Helper()
	if !warden.IsCode(err, code) {
		t.Fatalf("want code %s, got %v (code %s)", code, err, warden.ErrorCode(err))
	}
}

func asErr(err error, target **warden.Error) bool { return errors.As(err, target) }
