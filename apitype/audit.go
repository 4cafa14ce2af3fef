package apitype

import "time"

// AuditEvent is one audit event on the wire: the same fields and names as
// the JSON Lines export (docs/audit.md), hashes in hex.
type AuditEvent struct {
	Seq          int64        `json:"seq"`
	ID           string       `json:"id"`
	Time         time.Time    `json:"time"`
	Kind         string       `json:"kind"`
	Actor        string       `json:"actor"`
	ActorRoles   []string     `json:"actor_roles,omitempty"`
	Identity     string       `json:"identity"`
	Action       string       `json:"action"`
	Resource     string       `json:"resource"`
	Decision     string       `json:"decision"`
	Code         string       `json:"code"`
	Policy       string       `json:"policy"`
	Rule         string       `json:"rule"`
	Reason       string       `json:"reason"`
	ApprovalID   string       `json:"approval_id,omitempty"`
	CredentialID string       `json:"credential_id,omitempty"`
	TraceID      string       `json:"trace_id,omitempty"`
	Request      AuditRequest `json:"request"`
	Outcome      AuditOutcome `json:"outcome"`
	// Detail is a JSON object, exactly as hashed.
	Detail   any    `json:"detail,omitempty"`
	V        int    `json:"v"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// AuditRequest describes the request behind an event.
type AuditRequest struct {
	Method        string `json:"method,omitempty"`
	Path          string `json:"path,omitempty"`
	ClientIP      string `json:"client_ip,omitempty"`
	UserAgent     string `json:"user_agent,omitempty"`
	Bytes         int64  `json:"bytes,omitempty"`
	ResponseBytes int64  `json:"response_bytes,omitempty"`
}

// AuditOutcome is what the upstream answered.
type AuditOutcome struct {
	Status    int   `json:"status,omitempty"`
	LatencyUS int64 `json:"latency_us,omitempty"`
}

// AuditList is the answer of GET /v1/audit.
type AuditList struct {
	Events     []AuditEvent `json:"events"`
	NextCursor string       `json:"next_cursor"`
}

// AuditProblem names the first bad sequence number and what is wrong.
type AuditProblem struct {
	Seq     int64  `json:"seq"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// AuditVerify is the answer of GET /v1/audit/verify.
type AuditVerify struct {
	OK bool `json:"ok"`
	// Events is the number of events checked; Head the hash of the last
	// one (HeadSeq its seq).
	Events          int64  `json:"events"`
	Head            string `json:"head"`
	HeadSeq         int64  `json:"head_seq"`
	Checkpoints     int    `json:"checkpoints"`
	CheckpointedSeq int64  `json:"checkpointed_seq"`
	// ArchivedSeq is the newest retention cut: events up to it were
	// archived and the database's chain starts after it; ArchivedEvents
	// counts the events checked in archive files.
	ArchivedSeq    int64         `json:"archived_seq,omitempty"`
	ArchivedEvents int64         `json:"archived_events,omitempty"`
	Error          string        `json:"error,omitempty"`
	FirstBadSeq    int64         `json:"first_bad_seq,omitempty"`
	Problem        *AuditProblem `json:"problem,omitempty"`
	Warnings       []string      `json:"warnings,omitempty"`
}
