package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"warden/apitype"
	"warden/internal/wardentest"
)

func TestFindingAndBreakerCLI(t *testing.T) {
	s := wardentest.StartServer(t, wardentest.ServerOptions{})
	ctx := context.Background()
	for _, n := range []string{"bot-a", "bot-b"} {
		if _, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: n, Type: "ai_agent", Owner: "ops@example.com", Labels: map[string]string{"team": "ops"}}); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"WARDEN_ADDR": s.URL, "WARDEN_TOKEN": s.RootToken}
	runIn := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if _, err := runIn("breaker", "trip", "bot-a"); err == nil {
		t.Fatal("trip without --reason accepted")
	}
	out, err := runIn("breaker", "trip", "bot-a", "--reason", "runaway loop")
	if err != nil || !strings.Contains(out, "bot-a") || !strings.Contains(out, "suspended") {
		t.Fatalf("trip: %v %s", err, out)
	}
	out, err = runIn("finding", "list", "--detector", "manual_trip")
	if err != nil || !strings.Contains(out, "manual_trip") || !strings.Contains(out, "runaway loop") {
		t.Fatalf("list: %v %s", err, out)
	}
	var list apitype.FindingList
	if err := s.Root.Do(ctx, "GET", "/v1/findings", nil, &list); err != nil || len(list.Findings) != 1 {
		t.Fatalf("api: %v %+v", err, list)
	}
	id := list.Findings[0].ID
	if out, err = runIn("finding", "resolve", id, "--note", "fixed the loop"); err != nil || !strings.Contains(out, "resolved") {
		t.Fatalf("resolve: %v %s", err, out)
	}
	if _, err = runIn("finding", "list", "--severity", "urgent"); err == nil {
		t.Fatal("bad severity accepted")
	}
	out, err = runIn("breaker", "pause", "--label", "team=ops", "--reason", "incident 9")
	if err != nil || !strings.Contains(out, "1 paused, 0 unchanged") {
		t.Fatalf("pause: %v %s", err, out)
	}
	out, err = runIn("breaker", "resume", "--owner", "ops@example.com")
	if err != nil || !strings.Contains(out, "1 resumed, 1 unchanged") {
		t.Fatalf("resume: %v %s", err, out)
	}
	if id, _ := s.Root.GetIdentity(ctx, "bot-b"); id.Status != "active" {
		t.Fatalf("bot-b: %s", id.Status)
	}
	if id, _ := s.Root.GetIdentity(ctx, "bot-a"); id.Status != "suspended" {
		t.Fatalf("bot-a: %s", id.Status)
	}
}
