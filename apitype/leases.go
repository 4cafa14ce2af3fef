package apitype

import "time"

// Lease is a dynamic database role leased to an identity. The password is
// never shown here: only the database front receives it.
type Lease struct {
	ID         string     `json:"id"`
	Credential string     `json:"credential"`
	Connector  string     `json:"connector"`
	Identity   string     `json:"identity"`
	Role       string     `json:"role"`
	State      string     `json:"state"` // active | ended | dropped
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	EndReason  string     `json:"end_reason,omitempty"`
	DroppedAt  *time.Time `json:"dropped_at,omitempty"`
}

// LeaseList lists leases, newest first.
type LeaseList struct {
	Leases []Lease `json:"leases"`
}

// CredentialVersion is one stored version of a credential's secret (never
// the secret). State is current, previous (kept until retire_at) or retired.
type CredentialVersion struct {
	Version   int64      `json:"version"`
	State     string     `json:"state"`
	CreatedAt time.Time  `json:"created_at"`
	RetireAt  *time.Time `json:"retire_at,omitempty"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// CredentialVersions lists a credential's versions, oldest first.
type CredentialVersions struct {
	Versions []CredentialVersion `json:"versions"`
}
