package elevation_test

import (
	"context"
	"testing"
	"time"

	"warden"
	"warden/internal/elevation"
	"warden/internal/identity"
	"warden/internal/policy"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var ctx = context.Background()

var (
	root     = warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}
	approver = warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_b", Subject: "bob@example.com", Roles: []string{warden.RoleApprover}}
	owner    = warden.Principal{Kind: warden.PrincipalAdmin, ID: "adm_a", Subject: "alice@example.com", Roles: []string{warden.RoleOwner, warden.RoleApprover}}
)

type fixture struct {
	clock  time.Time
	ids    *identity.Service
	engine *policy.Engine
	svc    *elevation.Service
	agent  *identity.Identity
}

func newFixture(t *testing.T, st *store.Store) *fixture {
	f := &fixture{clock: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	now := func() time.Time { return f.clock }
	f.ids = identity.New(identity.Options{Store: st, Now: now})
	f.engine = policy.NewEngine(policy.Options{Now: now})
	pols := policy.NewService(st, f.engine)
	f.svc = elevation.New(elevation.Options{Store: st, Policies: pols, Identities: f.ids, MaxDuration: 4 * time.Hour, Now: now})
	var err error
	f.agent, err = f.ids.Create(ctx, root, identity.CreateInput{Name: "deployer", Type: identity.TypeBot, Owner: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) decide(action string, resource map[string]any) policy.Decision {
	return f.engine.Decide(ctx, &policy.Request{
		Identity: policy.Identity{ID: f.agent.ID, Name: f.agent.Name, Type: f.agent.Type, Owner: f.agent.Owner},
		Action:   action, Resource: resource, Explain: true,
	})
}

func TestElevationLifecycle(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		self := warden.Principal{Kind: warden.PrincipalIdentity, ID: f.agent.ID, Subject: f.agent.Name}
		if d := f.decide("github:repos.delete", map[string]any{"repo": "scratch"}); d.Effect != policy.Deny {
			t.Fatalf("before: %+v", d)
		}
		e, err := f.svc.Request(ctx, self, elevation.RequestInput{Identity: "deployer", Actions: []string{"github:repos.delete"}, Resources: map[string]string{"repo": "scratch"}, Duration: time.Hour, Reason: "clean up"})
		if err != nil || e.Status != elevation.StatusPending {
			t.Fatalf("request: %+v %v", e, err)
		}
		// The owner may not approve the elevation of their own identity.
		if _, err := f.svc.Decide(ctx, owner, e.ID, true, ""); !warden.IsCode(err, warden.CodeForbidden) {
			t.Fatalf("owner approving: %v", err)
		}
		if _, err := f.svc.Decide(ctx, self, e.ID, true, ""); !warden.IsCode(err, warden.CodeForbidden) {
			t.Fatalf("identity approving itself: %v", err)
		}
		got, err := f.svc.Decide(ctx, approver, e.ID, true, "ok for an hour")
		if err != nil || got.Status != elevation.StatusActive || !got.ExpiresAt.Equal(f.clock.Add(time.Hour)) {
			t.Fatalf("approve: %+v %v", got, err)
		}
		if _, err := f.svc.Decide(ctx, approver, e.ID, true, ""); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("second decision: %v", err)
		}
		// The grant works, only for the named resource, and shows in explain.
		d := f.decide("github:repos.delete", map[string]any{"repo": "scratch"})
		if d.Effect != policy.Allow || d.Policy != e.PolicyName() {
			t.Fatalf("granted: %+v", d)
		}
		if d := f.decide("github:repos.delete", map[string]any{"repo": "prod"}); d.Effect != policy.Deny {
			t.Fatalf("other resource: %+v", d)
		}
		// It expires by itself on the clock.
		f.clock = f.clock.Add(time.Hour)
		if d := f.decide("github:repos.delete", map[string]any{"repo": "scratch"}); d.Effect != policy.Deny {
			t.Fatalf("after expiry: %+v", d)
		}
		if got, _ := f.svc.Get(ctx, self, e.ID); got.Status != elevation.StatusExpired {
			t.Fatalf("status after expiry: %s", got.Status)
		}
		if n, err := f.svc.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("sweep: %d %v", n, err)
		}
		if _, ok := f.engine.Get(e.PolicyName()); ok {
			t.Fatal("expired grant's policy still loaded")
		}

		// Early revocation.
		e2, _ := f.svc.Request(ctx, owner, elevation.RequestInput{Identity: f.agent.ID, Actions: []string{"github:issues.*"}, Duration: 2 * time.Hour, Reason: "triage"})
		if _, err := f.svc.Decide(ctx, approver, e2.ID, true, ""); err != nil {
			t.Fatal(err)
		}
		if d := f.decide("github:issues.create", nil); d.Effect != policy.Allow {
			t.Fatalf("granted 2: %+v", d)
		}
		if _, err := f.svc.Revoke(ctx, self, e2.ID, "done early"); err != nil {
			t.Fatal(err)
		}
		if d := f.decide("github:issues.create", nil); d.Effect != policy.Deny {
			t.Fatalf("after revoke: %+v", d)
		}
		list, err := f.svc.List(ctx, approver, "")
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %d %v", len(list), err)
		}
	})
}

func TestElevationBadInput(t *testing.T) {
	f := newFixture(t, wardentest.SQLite(t))
	self := warden.Principal{Kind: warden.PrincipalIdentity, ID: f.agent.ID}
	other := warden.Principal{Kind: warden.PrincipalIdentity, ID: "nhi_someoneelse00000000"}
	ok := elevation.RequestInput{Identity: "deployer", Actions: []string{"svc:op"}, Duration: time.Hour, Reason: "r"}
	for name, c := range map[string]struct {
		p   warden.Principal
		mut func(*elevation.RequestInput)
		cod warden.Code
	}{
		"too long":         {self, func(in *elevation.RequestInput) { in.Duration = 5 * time.Hour }, warden.CodeInvalid},
		"no actions":       {self, func(in *elevation.RequestInput) { in.Actions = nil }, warden.CodeInvalid},
		"everything":       {self, func(in *elevation.RequestInput) { in.Actions = []string{"*"} }, warden.CodeInvalid},
		"bad pattern":      {self, func(in *elevation.RequestInput) { in.Actions = []string{"nocolon"} }, warden.CodeInvalid},
		"no reason":        {self, func(in *elevation.RequestInput) { in.Reason = " " }, warden.CodeInvalid},
		"cel injection":    {self, func(in *elevation.RequestInput) { in.Resources = map[string]string{"repo) || true || (x": "y"} }, warden.CodeInvalid},
		"another identity": {other, func(*elevation.RequestInput) {}, warden.CodeForbidden},
		"unknown identity": {self, func(in *elevation.RequestInput) { in.Identity = "ghost" }, warden.CodeInvalid},
	} {
		in := ok
		c.mut(&in)
		if _, err := f.svc.Request(ctx, c.p, in); !warden.IsCode(err, c.cod) {
			t.Errorf("%s: got %v, want %s", name, err, c.cod)
		}
	}
	// A value with quotes stays a string literal, not CEL.
	e, err := f.svc.Request(ctx, self, elevation.RequestInput{Identity: "deployer", Actions: []string{"svc:op"}, Resources: map[string]string{"repo": `x" || true || "`}, Duration: time.Hour, Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Decide(ctx, approver, e.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	if d := f.decide("svc:op", map[string]any{"repo": "anything"}); d.Effect != policy.Deny {
		t.Fatalf("quoted value escaped its literal: %+v", d)
	}
	if d := f.decide("svc:op", map[string]any{"repo": `x" || true || "`}); d.Effect != policy.Allow {
		t.Fatalf("exact value: %+v", d)
	}
}
