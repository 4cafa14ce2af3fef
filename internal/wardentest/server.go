package wardentest

import (
	"context"
	"encoding/base64"
	"net"
	"testing"
	"time"

	"warden"
	"warden/client"
	"warden/internal/config"
	"warden/internal/server"
)

// Server is a real Warden server running in the test process.
type Server struct {
	URL       string
	RootToken string
	DataDir   string
	Root      *client.Client
	stop      func()
}

// ServerOptions select the engine and tweak the configuration.
type ServerOptions struct {
	DSN       string // PostgreSQL DSN; empty means SQLite in a temp dir
	DataDir   string // reuse a data dir (restart tests); empty means fresh
	MasterKey []byte // default: a fresh random key
	Configure func(*config.Config)
}

// StartServer runs server.Run on 127.0.0.1:0 until the test ends.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.Data = o.DataDir
	if cfg.Data == "" {
		cfg.Data = t.TempDir()
	}
	cfg.Database = o.DSN
	cfg.LogLevel = "error"
	cfg.ShutdownGrace = 5 * time.Second
	root := warden.NewKey(warden.KeyPrefixAdmin)
	cfg.RootToken = warden.NewSecret(root)
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	key := o.MasterKey
	if key == nil {
		key = make([]byte, 32)
		copy(key, []byte(warden.RandomString(32)))
	}
	env := map[string]string{"WARDEN_MASTER_KEY": base64.StdEncoding.EncodeToString(key)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{Config: cfg, Getenv: func(k string) string { return env[k] }, Listener: ln, Ready: func(a string) { ready <- a }})
	}()
	select {
	case addr := <-ready:
		s := &Server{URL: "http://" + addr, RootToken: root, DataDir: cfg.Data}
		s.Root = client.New(s.URL, root)
		var once bool
		s.stop = func() {
			if once {
				return
			}
			once = true
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server stopped with error: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("server did not stop within 15s")
			}
		}
		t.Cleanup(s.stop)
		return s
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server not ready within 30s")
	}
	return nil
}

// Stop shuts the server down gracefully (also done at test end).
func (s *Server) Stop() { s.stop() }

// Client returns a client for the server with the given token.
func (s *Server) Client(token string) *client.Client { return client.New(s.URL, token) }

// EngineServers runs fn against a server on SQLite and, when configured, on
// PostgreSQL.
func EngineServers(t *testing.T, fn func(t *testing.T, s *Server)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, StartServer(t, ServerOptions{})) })
	t.Run("postgres", func(t *testing.T) { fn(t, StartServer(t, ServerOptions{DSN: PostgresDSN(t)})) })
}
