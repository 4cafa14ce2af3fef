package api

import (
	"net/http"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/auditsink"
)

// AuditSinks reports the streaming audit sinks' state.
type AuditSinks interface {
	Status() []auditsink.Status
}

// listAuditSinks answers GET /v1/audit/sinks: every configured sink's
// cursor, lag, last delivery and last error (never a URL or secret).
func (a *API) listAuditSinks(w http.ResponseWriter, r *http.Request) error {
	if !principal(r).HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return warden.Errorf(warden.CodeForbidden, "reading the audit sinks needs the admin, security or auditor role")
	}
	out := apitype.AuditSinkList{Sinks: []apitype.AuditSink{}}
	if a.o.AuditSinks != nil {
		for _, s := range a.o.AuditSinks.Status() {
			out.Sinks = append(out.Sinks, apitype.AuditSink{
				Name: s.Name, Type: s.Type, Cursor: s.Cursor, Lag: s.Lag, Active: s.Active, Delivered: s.Delivered,
				LastDelivery: timePtr(s.LastDelivery), LastError: s.LastError, LastErrorAt: timePtr(s.LastErrorAt),
			})
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
