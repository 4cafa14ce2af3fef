package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"warden/apitype"
	"warden/internal/wardentest"
)

func TestCredentialAndApprovalCLI(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	env := map[string]string{"WARDEN_ADDR": s.URL, "WARDEN_TOKEN": s.RootToken}
	runIn := func(stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := runIn(`{"token":"cli-canary-secret-1"}`, "credential", "create", "gh", "--type", "bearer", "--connector", "github", "--secret-stdin", "--rotate-every", "30d")
	if err != nil || !strings.Contains(out, "stored gh") {
		t.Fatalf("create: %v %s", err, out)
	}
	out, err = runIn("", "credential", "list", "-o", "json")
	if err != nil || !strings.Contains(out, `"name": "gh"`) || strings.Contains(out, "cli-canary") {
		t.Fatalf("list: %v %s", err, out)
	}
	out, err = runIn("", "credential", "rotate", "gh", "--secret", "token=cli-canary-secret-2")
	if err != nil || !strings.Contains(out, "version 2") || strings.Contains(out, "canary") {
		t.Fatalf("rotate: %v %s", err, out)
	}
	if _, err := runIn("", "credential", "create", "bad", "--type", "bearer", "--connector", "github"); err == nil {
		t.Fatal("create without a secret accepted")
	}
	if _, err := runIn("", "credential", "rotate", "gh", "--secret", "password=x"); err == nil {
		t.Fatal("rotate with a wrong field accepted")
	}
	out, err = runIn("", "approval", "list")
	if err != nil || !strings.Contains(out, "ID") {
		t.Fatalf("approval list: %v %s", err, out)
	}
	if _, err := runIn("", "approval", "approve", "apr_doesnotexist000000"); err == nil {
		t.Fatal("approving a missing approval succeeded")
	}
	var l apitype.CredentialList
	if err := s.Root.Do(context.Background(), "GET", "/v1/credentials", nil, &l); err != nil || len(l.Credentials) != 1 || l.Credentials[0].Rotation == nil {
		t.Fatalf("api view: %+v %v", l, err)
	}
}
