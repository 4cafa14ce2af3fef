// Package approval holds human approvals of single governed calls: the
// state machine (pending -> approved | denied | expired -> used), the binding
// of an approval to exactly one call (identity + fingerprint of operation
// and arguments), segregation of duties, quotas and notifications.
package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"warden"
)

// Statuses.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	StatusExpired  = "expired"
	StatusUsed     = "used"
)

// Approval is one request for a human decision about one call.
type Approval struct {
	ID           string
	IdentityID   string
	IdentityName string
	Owner        string // the identity's accountable owner (may not approve)
	Action       string
	Method       string
	Path         string
	Resource     map[string]any
	Fingerprint  string // binds the approval to exactly one call
	Policy       string
	Rule         string
	Reason       string // why the policy asked
	Status       string
	UsesLeft     int
	// Required distinct approvers; Approvers (roles or people) may approve,
	// empty meaning the approver role; AllowOwner lets the identity's owner
	// approve. ApprovedBy lists who approved so far.
	Required   int
	Approvers  []string
	AllowOwner bool
	ApprovedBy []string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	DecidedAt  *time.Time
	DecidedBy  string
	Comment    string
	UsedAt     *time.Time
}

// Fingerprint is the SHA-256 of the canonical JSON of what the call does:
// identity, action, upstream method and path, resource and params. JSON
// objects encode with sorted keys, so equal calls have equal fingerprints.
func Fingerprint(identityID, action, method, path string, resource, params map[string]any) string {
	b, _ := json.Marshal(map[string]any{
		"v": 1, "identity": identityID, "action": action, "method": method, "path": path,
		"resource": resource, "params": params,
	})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Store is the data access approvals need. Transition moves one approval
// from status `from` to its new state atomically (compare-and-set on
// status, uses_left and the number of approvals so far) and fails with
// CodeConflict when it was not in that state (another approver or a retry
// got there first).
type Store interface {
	CreateApproval(ctx context.Context, a *Approval) error
	GetApproval(ctx context.Context, id string) (*Approval, error)
	ListApprovals(ctx context.Context, status, identityID string, limit int) ([]*Approval, error)
	CountPending(ctx context.Context, identityID string, now time.Time) (int, error)
	Transition(ctx context.Context, a *Approval, from string, fromUses, fromApprovals int, rec *warden.Change) error
	ExpirePending(ctx context.Context, identityID string, now time.Time) (int, error)
}
