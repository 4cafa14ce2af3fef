package apitype

import "time"

// Finding is one behavioural finding on the wire (docs/monitor.md).
type Finding struct {
	ID           string `json:"id"`
	Identity     string `json:"identity"`
	IdentityName string `json:"identity_name"`
	Owner        string `json:"owner"`
	KeyID        string `json:"key_id,omitempty"`
	Detector     string `json:"detector"`
	Severity     string `json:"severity"`
	// Explanation says what happened and why it is unusual for this identity.
	Explanation string         `json:"explanation"`
	Action      string         `json:"action,omitempty"`
	Evidence    map[string]any `json:"evidence,omitempty"`
	// Time is when the finding was raised; FirstEventAt the first anomalous
	// observation behind it.
	Time         time.Time `json:"time"`
	FirstEventAt time.Time `json:"first_event_at"`
	// ActionTaken is what the circuit breaker did: alert, throttle or
	// suspend (with a note when it had to fall back).
	ActionTaken     string     `json:"action_taken"`
	ContainedAt     *time.Time `json:"contained_at,omitempty"`
	TimeToDetectMS  int64      `json:"time_to_detect_ms"`
	TimeToContainMS *int64     `json:"time_to_contain_ms,omitempty"`
	Status          string     `json:"status"`
	AcknowledgedBy  string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt  *time.Time `json:"acknowledged_at,omitempty"`
	ResolvedBy      string     `json:"resolved_by,omitempty"`
	ResolvedAt      *time.Time `json:"resolved_at,omitempty"`
	Note            string     `json:"note,omitempty"`
}

// FindingList is the answer of GET /v1/findings.
type FindingList struct {
	Findings   []Finding `json:"findings"`
	NextCursor string    `json:"next_cursor"`
}

// FindingUpdate is the optional body of POST /v1/findings/{id}/ack|resolve.
type FindingUpdate struct {
	Note string `json:"note,omitempty"`
}

// BreakerTrip is the body of POST /v1/breaker/{id}/trip and /reset.
type BreakerTrip struct {
	Reason string `json:"reason"`
}

// BreakerTripped is the answer of POST /v1/breaker/{id}/trip.
type BreakerTripped struct {
	Identity Identity `json:"identity"`
	Finding  Finding  `json:"finding"`
}

// BreakerReset is the answer of POST /v1/breaker/{id}/reset.
type BreakerReset struct {
	Identity  Identity `json:"identity"`
	Throttled bool     `json:"was_throttled"`
}

// BreakerPause is the body of POST /v1/breaker/pause and /resume: owner,
// labels (all must match) or both.
type BreakerPause struct {
	Owner  string            `json:"owner,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Reason string            `json:"reason"`
}

// BreakerSkipped names an identity a pause or resume left alone, and why.
type BreakerSkipped struct {
	Identity string `json:"identity"`
	Reason   string `json:"reason"`
}

// BreakerPaused is the answer of POST /v1/breaker/pause and /resume.
type BreakerPaused struct {
	Identities []Identity       `json:"identities"`
	Skipped    []BreakerSkipped `json:"skipped"`
}

// Throttle is one identity the breaker is throttling.
type Throttle struct {
	Identity string    `json:"identity"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
	Finding  string    `json:"finding"`
}

// ThrottleList is the answer of GET /v1/breaker/throttles.
type ThrottleList struct {
	Throttles []Throttle `json:"throttles"`
}
