package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/problem"
)

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
	Events          int64         `json:"events"`
	Head            string        `json:"head"`
	HeadSeq         int64         `json:"head_seq"`
	Checkpoints     int           `json:"checkpoints"`
	CheckpointedSeq int64         `json:"checkpointed_seq"`
	Error           string        `json:"error,omitempty"`
	FirstBadSeq     int64         `json:"first_bad_seq,omitempty"`
	Problem         *AuditProblem `json:"problem,omitempty"`
	Warnings        []string      `json:"warnings,omitempty"`
}

// AuditEventOut converts an event to its wire form.
func AuditEventOut(e *audit.Event) AuditEvent {
	out := AuditEvent{
		Seq: e.Seq, ID: e.ID, Time: e.Time, Kind: e.Kind, Actor: e.Actor, ActorRoles: e.ActorRoles, Identity: e.Identity,
		Action: e.Action, Resource: e.Resource, Decision: e.Decision, Code: e.Code, Policy: e.Policy, Rule: e.Rule,
		Reason: e.Reason, ApprovalID: e.ApprovalID, CredentialID: e.CredentialID, TraceID: e.TraceID,
		Request: AuditRequest{Method: e.Request.Method, Path: e.Request.Path, ClientIP: e.Request.ClientIP,
			UserAgent: e.Request.UserAgent, Bytes: e.Request.Bytes, ResponseBytes: e.Request.ResponseBytes},
		Outcome:  AuditOutcome{Status: e.Outcome.Status, LatencyUS: e.Outcome.Latency.Microseconds()},
		V:        e.V,
		PrevHash: e.PrevHash.String(), Hash: e.Hash.String(),
	}
	if len(e.Detail) > 0 {
		out.Detail = json.RawMessage(e.Detail)
	}
	return out
}

// AuditVerifyOut converts a verification report to its wire form.
func AuditVerifyOut(rep audit.Report) AuditVerify {
	out := AuditVerify{OK: rep.OK, Events: rep.Events, Head: rep.Head.Hash.String(), HeadSeq: rep.Head.Seq,
		Checkpoints: rep.Checkpoints, CheckpointedSeq: rep.CheckpointedSeq, Warnings: rep.Warnings}
	if p := rep.Problem; p != nil {
		out.Error = p.Error()
		out.FirstBadSeq = p.Seq
		out.Problem = &AuditProblem{Seq: p.Seq, Kind: string(p.Kind), Message: p.Message}
	}
	return out
}

// auditReader checks the caller may read the audit trail and that a log is
// configured.
func (a *API) auditReader(r *http.Request) (*audit.Log, error) {
	if !principal(r).HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading the audit log needs the admin, security or auditor role")
	}
	if a.o.Audit == nil {
		return nil, warden.Errorf(warden.CodeUnavailable, "the audit log is not configured")
	}
	return a.o.Audit, nil
}

// auditFilter reads the filters shared by query and export. An identity may
// be named by id or name; a name is resolved to the id events carry.
func (a *API) auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Identity: q.Get("identity"), Kind: q.Get("kind"), Action: q.Get("action"), Decision: q.Get("decision"), Text: q.Get("text")}
	now := time.Now()
	var err error
	if f.Since, err = audit.ParseTime(q.Get("since"), now); err != nil {
		return f, warden.FieldError("since", "must be an RFC 3339 time or a duration like 24h or 7d")
	}
	if f.Until, err = audit.ParseTime(q.Get("until"), now); err != nil {
		return f, warden.FieldError("until", "must be an RFC 3339 time or a duration like 24h or 7d")
	}
	if f.Identity != "" && !warden.HasPrefix(f.Identity, warden.PrefixIdentity) && a.o.Identities != nil {
		if id, err := a.o.Identities.Lookup(r.Context(), f.Identity); err == nil {
			f.Identity = id.ID
		} else if !warden.IsCode(err, warden.CodeNotFound) && !warden.IsCode(err, warden.CodeInvalid) {
			return f, err
		}
	}
	return f, nil
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	l, err := a.auditReader(r)
	if err != nil {
		return err
	}
	f, err := a.auditFilter(r)
	if err != nil {
		return err
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return warden.FieldError("limit", "must be a whole number between 1 and %d", audit.MaxLimit)
		}
		f.Limit = n
	}
	evs, next, err := l.Query(r.Context(), f, r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	out := AuditList{Events: make([]AuditEvent, 0, len(evs)), NextCursor: next}
	for i := range evs {
		out.Events = append(out.Events, AuditEventOut(&evs[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	l, err := a.auditReader(r)
	if err != nil {
		return err
	}
	rep, err := l.Verify(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, AuditVerifyOut(rep))
}

// exportAudit streams matching events, oldest first, as JSON Lines or OCSF.
// Errors after the first byte can only end the stream early; a client sees a
// short export, never a forged line.
func (a *API) exportAudit(w http.ResponseWriter, r *http.Request) error {
	l, err := a.auditReader(r)
	if err != nil {
		return err
	}
	f, err := a.auditFilter(r)
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = audit.FormatJSONL
	}
	if format != audit.FormatJSONL && format != audit.FormatOCSF {
		return warden.FieldError("format", "must be jsonl or ocsf")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if _, err := l.Export(r.Context(), w, format, f); err != nil {
		a.o.Logger.Warn("audit export ended early", "request_id", problem.RequestID(r.Context()), "err", err)
	}
	return nil
}

// auditCheckpoints serves every signed checkpoint in the checkpoint file
// format, with the public key, so a copy kept elsewhere can later be given
// to warden audit verify --checkpoints.
func (a *API) auditCheckpoints(w http.ResponseWriter, r *http.Request) error {
	l, err := a.auditReader(r)
	if err != nil {
		return err
	}
	cps, err := l.Checkpoints(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	for _, c := range cps {
		b, err := audit.MarshalCheckpoint(c)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return nil
		}
	}
	return nil
}
