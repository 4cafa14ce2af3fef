package config

import (
	"strings"
	"testing"
	"time"

	"warden/internal/audit"
)

func TestAuditSinksFromFile(t *testing.T) {
	c := Defaults()
	err := c.LoadFile(write(t, `
audit_sinks:
  - name: splunk
    type: webhook
    url: https://hec.example.com/services/collector/raw
    secret_env: WARDEN_SPLUNK_SECRET
    authorization_env: WARDEN_SPLUNK_HEC
    format: ocsf
    kinds: [operation.decided, anomaly.finding]
    batch_size: 200
    flush_interval: 2s
  - name: rsyslog
    type: syslog
    network: tls
    address: logs.example.com:6514
    ca_file: /etc/warden/ca.pem
    max_lag: 50000
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.AuditSinks) != 2 || c.AuditSinks[0].SecretEnv != "WARDEN_SPLUNK_SECRET" || c.AuditSinks[0].AuthorizationEnv != "WARDEN_SPLUNK_HEC" || c.AuditSinks[0].FlushInterval != 2*time.Second ||
		c.AuditSinks[1].Network != "tls" || c.AuditSinks[1].MaxLag != 50000 {
		t.Fatalf("%+v", c.AuditSinks)
	}
	// An inline secret is not a key the file may hold.
	c = Defaults()
	if err := c.LoadFile(write(t, "audit_sinks:\n  - name: x\n    type: webhook\n    url: https://x\n    secret: hunter2\n")); err == nil {
		t.Fatal("an inline secret was accepted")
	}
}

func TestAuditSinksValidate(t *testing.T) {
	hook := AuditSink{Name: "siem", Type: "webhook", URL: "https://siem.example.com/in"}
	sys := AuditSink{Name: "sys", Type: "syslog", Network: "tcp", Address: "logs:514"}
	bad := map[string]func() []AuditSink{
		"name":                 func() []AuditSink { s := hook; s.Name = "SIEM 1"; return []AuditSink{s} },
		"used by":              func() []AuditSink { return []AuditSink{hook, hook} },
		"type":                 func() []AuditSink { s := hook; s.Type = "kafka"; return []AuditSink{s} },
		"url":                  func() []AuditSink { s := hook; s.URL = "file:///etc/passwd"; return []AuditSink{s} },
		"format":               func() []AuditSink { s := hook; s.Format = "cef"; return []AuditSink{s} },
		"secret_env":           func() []AuditSink { s := hook; s.SecretEnv = "hunter2 is my secret"; return []AuditSink{s} },
		"network":              func() []AuditSink { s := sys; s.Network = "sctp"; return []AuditSink{s} },
		"address":              func() []AuditSink { s := sys; s.Address = "logs"; return []AuditSink{s} },
		"for webhook":          func() []AuditSink { s := sys; s.URL = "https://x"; return []AuditSink{s} },
		"for syslog":           func() []AuditSink { s := hook; s.Address = "x:1"; return []AuditSink{s} },
		"batch_size":           func() []AuditSink { s := hook; s.BatchSize = 5000; return []AuditSink{s} },
		"must not be negative": func() []AuditSink { s := sys; s.Timeout = -time.Second; return []AuditSink{s} },
		"kinds":                func() []AuditSink { s := hook; s.Kinds = []string{"operation.decide"}; return []AuditSink{s} },
	}
	for want, mk := range bad {
		c := Defaults()
		c.AuditSinks = mk()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error repeats a secret-looking value: %v", want, err)
		}
	}
	c := Defaults()
	c.AuditSinks = []AuditSink{hook, sys}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// A typo in kinds would filter out every event while the cursor moves on:
// it is refused, naming the sink, the value and the kinds there are.
func TestAuditSinkKinds(t *testing.T) {
	c := Defaults()
	c.AuditSinks = []AuditSink{{Name: "siem", Type: "webhook", URL: "https://siem.example.com/in", Kinds: []string{"anomaly.finding", "operation.decide"}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("an unknown kind was accepted")
	}
	for _, want := range append([]string{"(siem)", `"operation.decide"`}, audit.Kinds()...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	c.AuditSinks[0].Kinds = audit.Kinds()
	if err := c.Validate(); err != nil {
		t.Fatalf("every known kind: %v", err)
	}
}

// An address without a host passes net.SplitHostPort but never reaches a
// receiver (over tls every handshake fails): refused for every network.
func TestAuditSinkAddressNeedsAHost(t *testing.T) {
	for _, network := range []string{"udp", "tcp", "tls"} {
		for _, addr := range []string{":6514", "logs.example.com:", "[]:6514"} {
			c := Defaults()
			c.AuditSinks = []AuditSink{{Name: "sys", Type: "syslog", Network: network, Address: addr}}
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "address") || !strings.Contains(err.Error(), "(sys)") {
				t.Errorf("%s %q: %v, want an error about the address", network, addr, err)
			}
		}
		c := Defaults()
		c.AuditSinks = []AuditSink{{Name: "sys", Type: "syslog", Network: network, Address: "[::1]:6514"}}
		if err := c.Validate(); err != nil {
			t.Errorf("%s [::1]:6514: %v", network, err)
		}
	}
}
