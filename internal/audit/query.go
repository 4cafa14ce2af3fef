package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"warden"
)

// Querier is what Query and Export read; Store satisfies it.
type Querier interface {
	QueryAudit(ctx context.Context, f Filter) ([]Event, error)
}

// MaxLimit bounds one page of Query.
const MaxLimit = 1000

// Query returns one page of events matching f, newest first (oldest first
// with f.Ascending), and the cursor of the next page ("" at the end). cursor
// is a value Query returned before, or "".
func Query(ctx context.Context, q Querier, f Filter, cursor string) ([]Event, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > MaxLimit {
		return nil, "", warden.FieldError("limit", "must be between 1 and %d", MaxLimit)
	}
	if cursor != "" {
		seq, err := parseCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		if f.Ascending {
			f.After = max(f.After, seq)
		} else if f.Before == 0 || seq < f.Before {
			f.Before = seq
		}
	}
	if err := validFilter(f); err != nil {
		return nil, "", err
	}
	want := f.Limit
	f.Limit++ // one more tells whether there is a next page
	evs, err := q.QueryAudit(ctx, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(evs) > want {
		evs = evs[:want]
		next = "s" + strconv.FormatInt(evs[want-1].Seq, 10)
	}
	return evs, next, nil
}

func parseCursor(c string) (int64, error) {
	if len(c) < 2 || c[0] != 's' {
		return 0, warden.FieldError("cursor", "is not a cursor this server returned")
	}
	n, err := strconv.ParseInt(c[1:], 10, 64)
	if err != nil || n < 0 {
		return 0, warden.FieldError("cursor", "is not a cursor this server returned")
	}
	return n, nil
}

// validFilter bounds what reaches SQL. Values are always bound parameters;
// these limits keep patterns cheap.
func validFilter(f Filter) error {
	for name, v := range map[string]string{"identity": f.Identity, "kind": f.Kind, "action": f.Action, "decision": f.Decision, "text": f.Text} {
		if len(v) > 256 {
			return warden.FieldError(name, "longer than 256 characters")
		}
		if strings.IndexByte(v, 0) >= 0 {
			return warden.FieldError(name, "must not contain NUL")
		}
	}
	if strings.Count(f.Action, "*") > 8 {
		return warden.FieldError("action", "at most 8 '*' in a pattern")
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return warden.FieldError("until", "must be after since")
	}
	return nil
}

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatOCSF  = "ocsf"
)

// NewEncoder writes events (or their OCSF form) as export does: one JSON
// object per line, detail bytes exactly as stored (no HTML escaping, which
// would change them and with them the hash), every control character
// escaped so an event is always one line.
func NewEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// Export writes every event matching f, oldest first, one JSON object per
// line, in the given format. Strings are JSON-escaped, so no field content
// (newlines, control characters) can start a line of its own: an event is
// always exactly one line. A jsonl line decodes to an Event whose hash
// recomputes: detail is written byte for byte as stored (no HTML escaping,
// which would change its bytes), which is also what retention archives
// rely on.
func Export(ctx context.Context, q Querier, w io.Writer, format string, f Filter) (int64, error) {
	if format != FormatJSONL && format != FormatOCSF {
		return 0, warden.FieldError("format", "must be jsonl or ocsf")
	}
	f.Ascending = true
	f.Limit = MaxLimit
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := NewEncoder(bw)
	var n int64
	cursor := ""
	for {
		evs, next, err := Query(ctx, q, f, cursor)
		if err != nil {
			return n, err
		}
		for i := range evs {
			var v any = &evs[i]
			if format == FormatOCSF {
				v = OCSF(&evs[i])
			}
			if err := enc.Encode(v); err != nil {
				return n, err
			}
			n++
		}
		if next == "" {
			return n, bw.Flush()
		}
		cursor = next
	}
}

// OCSF maps an event onto an OCSF 1.1 event: operations and most kinds as
// API Activity (class 6003); admin changes as Entity Management (class
// 3004). Warden's own fields (seq, hashes, policy, rule) are kept under
// unmapped.warden so a SIEM can still check the chain.
func OCSF(e *Event) map[string]any {
	classUID, className, categoryUID, categoryName := 6003, "API Activity", 6, "Application Activity"
	activityID, activityName := 99, e.Action
	if e.Kind == KindAdminChange {
		classUID, className, categoryUID, categoryName = 3004, "Entity Management", 3, "Identity & Access Management"
		activityID = changeActivity(e.Action)
	}
	statusID, status := 1, "Success"
	switch e.Decision {
	case "deny", "error":
		statusID, status = 2, "Failure"
	case "require_approval":
		statusID, status = 99, "Other"
	}
	severity := 1
	if e.Kind == KindFinding {
		severity = 3
	}
	out := map[string]any{
		"class_uid": classUID, "class_name": className, "category_uid": categoryUID, "category_name": categoryName,
		"activity_id": activityID, "activity_name": activityName, "type_uid": classUID*100 + activityID,
		"time": e.Time.UnixMilli(), "severity_id": severity, "status_id": statusID, "status": status,
		"status_code": e.Code, "status_detail": e.Reason, "message": e.Kind + " " + e.Action,
		"metadata": map[string]any{
			"version": "1.1.0", "uid": e.ID, "sequence": e.Seq, "log_name": "warden.audit",
			"product": map[string]any{"name": "Warden", "vendor_name": "Warden"},
		},
		"actor": map[string]any{"user": map[string]any{"name": e.Actor, "uid": e.Identity, "groups": rolesGroups(e.ActorRoles)}},
		"api":   map[string]any{"operation": e.Action, "service": map[string]any{"name": connectorOf(e.Action)}},
		"unmapped": map[string]any{"warden": map[string]any{
			"kind": e.Kind, "decision": e.Decision, "policy": e.Policy, "rule": e.Rule, "resource": e.Resource,
			"approval_id": e.ApprovalID, "credential_id": e.CredentialID, "detail": e.Detail,
			"v": e.V, "prev_hash": e.PrevHash, "hash": e.Hash,
		}},
	}
	if e.TraceID != "" {
		out["metadata"].(map[string]any)["correlation_uid"] = e.TraceID
	}
	if e.Request.Method != "" || e.Request.Path != "" {
		out["http_request"] = map[string]any{"http_method": e.Request.Method, "url": map[string]any{"path": e.Request.Path}, "user_agent": e.Request.UserAgent, "length": e.Request.Bytes}
	}
	if e.Request.ClientIP != "" {
		out["src_endpoint"] = map[string]any{"ip": e.Request.ClientIP}
	}
	if e.Outcome.Status != 0 {
		out["http_response"] = map[string]any{"code": e.Outcome.Status, "length": e.Request.ResponseBytes}
		out["duration"] = e.Outcome.Latency.Milliseconds()
	}
	return out
}

func changeActivity(action string) int {
	_, verb, _ := strings.Cut(action, ".")
	switch verb {
	case "create":
		return 1
	case "get", "read", "list":
		return 2
	case "update", "put", "apply", "suspend", "resume", "rotate":
		return 3
	case "delete", "revoke", "decommission":
		return 4
	}
	return 99
}

func connectorOf(action string) string {
	c, _, ok := strings.Cut(action, ":")
	if !ok {
		return "warden"
	}
	return c
}

func rolesGroups(roles []string) []map[string]string {
	out := make([]map[string]string, 0, len(roles))
	for _, r := range roles {
		out = append(out, map[string]string{"name": r})
	}
	return out
}

// ParseTime reads a time filter: RFC 3339, or a duration back from now
// ("15m", "24h", "7d").
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 && n < 100000 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, warden.Errorf(warden.CodeInvalid, "%q is neither an RFC 3339 time nor a duration like 24h or 7d", s)
}
