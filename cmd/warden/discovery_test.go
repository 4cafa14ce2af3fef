package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warden"
	"warden/apitype"
	"warden/internal/wardentest"
)

func TestScanReportAndVault(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	dir := t.TempDir()
	leaked := warden.NewKey(warden.KeyPrefixAgent)
	if err := os.WriteFile(filepath.Join(dir, "deploy.env"), []byte("WARDEN_KEY="+leaked+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WARDEN_ADDR": s.URL, "WARDEN_TOKEN": s.RootToken}
	runIn := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, errOut, err := runIn("scan", "--report", "--source", "repo-a", "--format", "json", dir)
	if exitCode(err) != 1 || !strings.Contains(errOut, "1 new") {
		t.Fatalf("scan --report: %v\n%s\n%s", err, out, errOut)
	}
	if strings.Contains(out+errOut, leaked) {
		t.Fatal("secret printed")
	}
	// Seen again: de-duplicated by fingerprint.
	if _, errOut, _ = runIn("scan", "--report", "--source", "repo-b", dir); !strings.Contains(errOut, "0 new, 1 seen again") {
		t.Fatalf("second report: %s", errOut)
	}
	var l apitype.DiscoveryList
	if err := s.Root.Do(context.Background(), "GET", "/v1/discoveries?status=open", nil, &l); err != nil || len(l.Discoveries) != 1 {
		t.Fatalf("inventory: %+v %v", l, err)
	}
	d := l.Discoveries[0]
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), leaked) || len(d.Locations) != 2 || !d.Verified {
		t.Fatalf("discovery: %s", raw)
	}
	// Vault it in one step, reading the value from where it was found.
	out, _, err = runIn("discovery", "vault", d.ID, "--connector", "warden-self", "--name", "leaked-key")
	if err != nil || !strings.Contains(out, "vaulted") || strings.Contains(out, leaked) {
		t.Fatalf("vault: %v %s", err, out)
	}
	var c apitype.Credential
	if err := s.Root.Do(context.Background(), "GET", "/v1/credentials/leaked-key", nil, &c); err != nil || c.Connector != "warden-self" {
		t.Fatalf("credential: %+v %v", c, err)
	}
	out, _, _ = runIn("discovery", "list", "--status", "vaulted")
	if !strings.Contains(out, d.ID) {
		t.Fatalf("vaulted list: %s", out)
	}
	// A value that is not the discovered secret is refused.
	if _, _, err := runIn("discovery", "vault", d.ID, "--connector", "x", "--name", "other", "--stdin"); err == nil {
		t.Fatal("vaulting a mismatching value succeeded")
	}
}

func TestDiscoveryReportRefusesSecrets(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	good := apitype.ReportedFinding{Rule: "r", Kind: "k", File: "f", Line: 1, Fingerprint: strings.Repeat("a", 64), Preview: "ghp_ab****"}
	for name, mut := range map[string]func(*apitype.ReportedFinding){
		"full secret as preview": func(f *apitype.ReportedFinding) { f.Preview = "ghp_abcdefghijklmnopqrstuvwxyz0123456789" },
		"long visible prefix":    func(f *apitype.ReportedFinding) { f.Preview = "ghp_abcdefghijkl****" },
		"bad fingerprint":        func(f *apitype.ReportedFinding) { f.Fingerprint = "xyz" },
		"no rule":                func(f *apitype.ReportedFinding) { f.Rule = "" },
	} {
		f := good
		mut(&f)
		err := s.Root.Do(context.Background(), "POST", "/v1/discoveries", apitype.DiscoveryReport{Findings: []apitype.ReportedFinding{f}}, nil)
		if err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: %v", name, err)
		}
	}
	var l apitype.DiscoveryList
	_ = s.Root.Do(context.Background(), "GET", "/v1/discoveries", nil, &l)
	if len(l.Discoveries) != 0 {
		t.Fatal("a refused report changed the inventory")
	}
}
