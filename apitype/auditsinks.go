package apitype

import "time"

// AuditSink is one streaming audit sink's state as the answering replica
// sees it (GET /v1/audit/sinks; docs/audit-sinks.md).
type AuditSink struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Cursor is the last seq delivered; Lag the events behind the head.
	Cursor int64 `json:"cursor"`
	Lag    int64 `json:"lag"`
	// Active is true when the answering replica is the one delivering.
	Active       bool       `json:"active"`
	Delivered    int64      `json:"delivered"`
	LastDelivery *time.Time `json:"last_delivery,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
}

// AuditSinkList answers GET /v1/audit/sinks.
type AuditSinkList struct {
	Sinks []AuditSink `json:"sinks"`
}
