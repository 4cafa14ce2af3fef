package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
	"warden/apitype"

	"warden"
	"warden/internal/audit"
	"warden/internal/problem"
)

// AuditEventOut converts an event to its wire form.
func AuditEventOut(e *audit.Event) apitype.AuditEvent {
	out := apitype.AuditEvent{
		Seq: e.Seq, ID: e.ID, Time: e.Time, Kind: e.Kind, Actor: e.Actor, ActorRoles: e.ActorRoles, Identity: e.Identity,
		Action: e.Action, Resource: e.Resource, Decision: e.Decision, Code: e.Code, Policy: e.Policy, Rule: e.Rule,
		Reason: e.Reason, ApprovalID: e.ApprovalID, CredentialID: e.CredentialID, TraceID: e.TraceID,
		Request: apitype.AuditRequest{Method: e.Request.Method, Path: e.Request.Path, ClientIP: e.Request.ClientIP,
			UserAgent: e.Request.UserAgent, Bytes: e.Request.Bytes, ResponseBytes: e.Request.ResponseBytes},
		Outcome:  apitype.AuditOutcome{Status: e.Outcome.Status, LatencyUS: e.Outcome.Latency.Microseconds()},
		V:        e.V,
		PrevHash: e.PrevHash.String(), Hash: e.Hash.String(),
	}
	if len(e.Detail) > 0 {
		out.Detail = json.RawMessage(e.Detail)
	}
	return out
}

// AuditVerifyOut converts a verification report to its wire form.
func AuditVerifyOut(rep audit.Report) apitype.AuditVerify {
	out := apitype.AuditVerify{OK: rep.OK, Events: rep.Events, Head: rep.Head.Hash.String(), HeadSeq: rep.Head.Seq,
		Checkpoints: rep.Checkpoints, CheckpointedSeq: rep.CheckpointedSeq, Warnings: rep.Warnings,
		ArchivedSeq: rep.ArchivedSeq, ArchivedEvents: rep.ArchivedEvents}
	if p := rep.Problem; p != nil {
		out.Error = p.Error()
		out.FirstBadSeq = p.Seq
		out.Problem = &apitype.AuditProblem{Seq: p.Seq, Kind: string(p.Kind), Message: p.Message}
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
	out := apitype.AuditList{Events: make([]apitype.AuditEvent, 0, len(evs)), NextCursor: next}
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
