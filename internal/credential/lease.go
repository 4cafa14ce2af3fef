package credential

import (
	"context"
	"time"

	"warden"
)

// LeaseRecord is a lease of a dynamic database role as stored. Password is
// sealed under aad "lease:<id>:password" and erased once the role is
// dropped.
type LeaseRecord struct {
	ID           string
	CredentialID string
	Connector    string
	IdentityID   string
	Role         string
	Password     []byte // sealed
	CreatedAt    time.Time
	ExpiresAt    time.Time
	EndedAt      *time.Time // revoked early (suspension, delete, DELETE /v1/leases/{id})
	EndReason    string
	DroppedAt    *time.Time // the role is gone from the database
}

// State names a lease's state: "active" (usable), "ended" (expired or
// revoked, role not dropped yet) or "dropped".
func (l *LeaseRecord) State(now time.Time) string {
	switch {
	case l.DroppedAt != nil:
		return "dropped"
	case l.EndedAt != nil || !now.Before(l.ExpiresAt):
		return "ended"
	}
	return "active"
}

// LeaseFilter selects leases to list; empty fields match everything.
type LeaseFilter struct {
	IdentityID   string
	CredentialID string
	// ActiveAt, when set, keeps only leases active at that time.
	ActiveAt time.Time
	Limit    int
}

// LeaseStore is the data access for leases. Every method that changes a
// lease records rec (when non-nil) in the same transaction.
type LeaseStore interface {
	CreateLease(ctx context.Context, l *LeaseRecord, rec warden.Change) error
	GetLease(ctx context.Context, id string) (*LeaseRecord, error)
	// ActiveLease returns the lease of credentialID for identityID that is
	// not ended and expires after notBefore, the latest-expiring one;
	// CodeNotFound if none.
	ActiveLease(ctx context.Context, credentialID, identityID string, notBefore time.Time) (*LeaseRecord, error)
	ListLeases(ctx context.Context, f LeaseFilter) ([]*LeaseRecord, error)
	// EndLease marks a lease ended at at with reason, unless it already
	// ended; it reports whether it changed the lease.
	EndLease(ctx context.Context, id string, at time.Time, reason string, rec *warden.Change) (bool, error)
	// PendingDrops returns up to limit leases whose role must be dropped:
	// not dropped yet, and ended or expired at now.
	PendingDrops(ctx context.Context, now time.Time, limit int) ([]*LeaseRecord, error)
	// MarkLeaseDropped records that the role is gone and erases the sealed
	// password.
	MarkLeaseDropped(ctx context.Context, id string, at time.Time) error
	// DeleteLease removes a lease whose role was never created.
	DeleteLease(ctx context.Context, id string) error
}
