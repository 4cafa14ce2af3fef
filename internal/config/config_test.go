package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFileStrict(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile(write(t, "listen: 0.0.0.0:9000\ntoken_ttl: 5m\nroot_token: abcdefghijklmnopqrstuvwxyz\n")); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9000" || c.TokenTTL != 5*time.Minute || c.RootToken.Reveal() != "abcdefghijklmnopqrstuvwxyz" || c.RootTokenValue != "" {
		t.Fatalf("%+v", c)
	}
	c = Defaults()
	err := c.LoadFile(write(t, "listen: x\nlisten_addr: y\n"))
	if err == nil || !strings.Contains(err.Error(), "listen_addr") {
		t.Fatalf("unknown key: %v", err)
	}
	c = Defaults()
	if err := c.LoadFile(write(t, "listen: a:1\n---\nlisten: b:2\n")); err == nil {
		t.Fatal("two documents accepted")
	}
}

func TestEnvOverridesFile(t *testing.T) {
	c := Defaults()
	_ = c.LoadFile(write(t, "listen: 127.0.0.1:1\n"))
	env := map[string]string{"WARDEN_LISTEN": "127.0.0.1:2", "WARDEN_DATABASE": "postgres://x/y", "WARDEN_TOKEN_TTL": "10m"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:2" || c.Database != "postgres://x/y" || c.TokenTTL != 10*time.Minute {
		t.Fatalf("%+v", c)
	}
	env["WARDEN_TOKEN_TTL"] = "soon"
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err == nil {
		t.Fatal("bad duration accepted")
	}
}

func TestValidate(t *testing.T) {
	bad := map[string]func(*Config){
		"listen":     func(c *Config) { c.Listen = "8700" },
		"database":   func(c *Config) { c.Database = "mysql://x" },
		"token_ttl":  func(c *Config) { c.TokenTTL = time.Second },
		"log_level":  func(c *Config) { c.LogLevel = "loud" },
		"root token": func(c *Config) { c.RootToken = newSecret("short") },
	}
	for name, mut := range bad {
		c := Defaults()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}
