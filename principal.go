package warden

import (
	"slices"
	"time"
)

// Admin roles. Root holds every role.
const (
	RoleAdmin    = "admin"    // everything
	RoleSecurity = "security" // policies, suspend/resume, audit
	RoleApprover = "approver" // approvals
	RoleAuditor  = "auditor"  // read-only, audit included
	RoleOwner    = "owner"    // manage only the identities one owns
)

// Roles lists every admin role.
var Roles = []string{RoleAdmin, RoleSecurity, RoleApprover, RoleAuditor, RoleOwner}

// Principal kinds.
const (
	PrincipalAdmin    = "admin"    // a human's admin token (or root)
	PrincipalIdentity = "identity" // a non-human identity (agent token or API key)
)

// Principal is who makes a request: an admin token acting for a human, or an
// identity. Handlers receive it from authentication and pass it to domain
// services, which decide what it may do.
type Principal struct {
	Kind    string
	ID      string   // admin token id ("root" for the root token) or identity id
	Subject string   // the human an admin token acts for; the identity's name
	Roles   []string // admin roles; empty for identities
	KeyID   string   // for identities: the API key the credential came from
	TokenID string   // for identities: the access token's jti, if any
}

// IsAdmin reports whether p is an admin principal.
func (p Principal) IsAdmin() bool { return p.Kind == PrincipalAdmin }

// HasRole reports whether p is an admin holding one of roles. The admin role
// implies every other role.
func (p Principal) HasRole(roles ...string) bool {
	if p.Kind != PrincipalAdmin {
		return false
	}
	if slices.Contains(p.Roles, RoleAdmin) {
		return true
	}
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// Actor is how p is named in change records and audit events.
func (p Principal) Actor() string {
	switch p.Kind {
	case PrincipalAdmin:
		if p.Subject != "" {
			return "admin:" + p.ID + "(" + p.Subject + ")"
		}
		return "admin:" + p.ID
	case PrincipalIdentity:
		return "identity:" + p.ID
	}
	return "system"
}

// Change is one admin change, recorded with its actor in the same
// transaction as the change itself.
type Change struct {
	ID         string
	At         time.Time
	Actor      string
	Action     string // e.g. identity.create, key.revoke
	TargetKind string // identity, key, admin_token, policy, ...
	Target     string // the target's id or name
	Detail     map[string]any
}

// NewChange fills id and time.
func NewChange(p Principal, action, kind, target string, detail map[string]any) Change {
	return Change{ID: NewID("chg_"), At: time.Now().UTC(), Actor: p.Actor(), Action: action, TargetKind: kind, Target: target, Detail: detail}
}
