package identity

import (
	"strings"
	"testing"

	"warden"
)

func TestValidate(t *testing.T) {
	ok := func() *Identity {
		return &Identity{Name: "support-agent", Type: TypeAIAgent, Owner: "alice@example.com", Labels: map[string]string{"team": "support"}, Environment: "prod"}
	}
	if err := validate(ok()); err != nil {
		t.Fatalf("valid identity refused: %v", err)
	}
	cases := map[string]struct {
		mut   func(*Identity)
		field string
	}{
		"empty name":       {func(i *Identity) { i.Name = "" }, "name"},
		"uppercase name":   {func(i *Identity) { i.Name = "Agent" }, "name"},
		"sql in name":      {func(i *Identity) { i.Name = "a';drop" }, "name"},
		"long name":        {func(i *Identity) { i.Name = strings.Repeat("a", 64) }, "name"},
		"id-like name":     {func(i *Identity) { i.Name = "nhi_abc" }, "name"},
		"bad type":         {func(i *Identity) { i.Type = "robot" }, "type"},
		"no owner":         {func(i *Identity) { i.Owner = "" }, "owner"},
		"owner with space": {func(i *Identity) { i.Owner = "alice smith" }, "owner"},
		"owner control":    {func(i *Identity) { i.Owner = "a\x00b" }, "owner"},
		"bad env":          {func(i *Identity) { i.Environment = "Prod!" }, "environment"},
		"bad label key":    {func(i *Identity) { i.Labels = map[string]string{"bad key": "v"} }, "labels"},
		"label value ctrl": {func(i *Identity) { i.Labels = map[string]string{"k": "v\n"} }, "labels.k"},
		"description ctrl": {func(i *Identity) { i.Description = "x\x1b[31m" }, "description"},
		"too many labels": {func(i *Identity) {
			i.Labels = map[string]string{}
			for n := 0; n < 65; n++ {
				i.Labels["k"+strings.Repeat("x", n)] = "v"
			}
		}, "labels"},
	}
	for name, c := range cases {
		id := ok()
		c.mut(id)
		err := validate(id)
		var we *warden.Error
		if err == nil || !asErr(err, &we) || we.Code != warden.CodeInvalid || we.Field != c.field {
			t.Errorf("%s: got %v, want invalid on %s", name, err, c.field)
		}
	}
}

func TestPermissions(t *testing.T) {
	id := &Identity{Owner: "alice@example.com"}
	admin := warden.Principal{Kind: warden.PrincipalAdmin, Roles: []string{warden.RoleAdmin}}
	sec := warden.Principal{Kind: warden.PrincipalAdmin, Roles: []string{warden.RoleSecurity}}
	aud := warden.Principal{Kind: warden.PrincipalAdmin, Roles: []string{warden.RoleAuditor}}
	alice := warden.Principal{Kind: warden.PrincipalAdmin, Subject: "alice@example.com", Roles: []string{warden.RoleOwner}}
	bob := warden.Principal{Kind: warden.PrincipalAdmin, Subject: "bob@example.com", Roles: []string{warden.RoleOwner}}
	agent := warden.Principal{Kind: warden.PrincipalIdentity, ID: "nhi_x"}
	for _, c := range []struct {
		name                    string
		p                       warden.Principal
		read, manage, setStatus bool
	}{
		{"admin", admin, true, true, true},
		{"security", sec, true, false, true},
		{"auditor", aud, true, false, false},
		{"owner", alice, true, true, true},
		{"other owner", bob, false, false, false},
		{"agent", agent, false, false, false},
	} {
		if canRead(c.p, id) != c.read || canManage(c.p, id) != c.manage || canChangeStatus(c.p, id) != c.setStatus {
			t.Errorf("%s: read=%v manage=%v status=%v", c.name, canRead(c.p, id), canManage(c.p, id), canChangeStatus(c.p, id))
		}
	}
}
