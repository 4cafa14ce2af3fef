package api

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/monitor"
)

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
	Identity apitype.Identity `json:"identity"`
	Finding  Finding          `json:"finding"`
}

// BreakerReset is the answer of POST /v1/breaker/{id}/reset.
type BreakerReset struct {
	Identity  apitype.Identity `json:"identity"`
	Throttled bool             `json:"was_throttled"`
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
	Identities []apitype.Identity `json:"identities"`
	Skipped    []BreakerSkipped   `json:"skipped"`
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

// FindingOut converts a finding to its wire form.
func FindingOut(f *monitor.Finding) Finding {
	out := Finding{ID: f.ID, Identity: f.IdentityID, IdentityName: f.IdentityName, Owner: f.Owner, KeyID: f.KeyID, Detector: f.Detector,
		Severity: string(f.Severity), Explanation: f.Explanation, Action: f.Action, Evidence: f.Evidence, Time: f.DetectedAt,
		FirstEventAt: f.FirstEventAt, ActionTaken: f.ActionTaken, ContainedAt: f.ContainedAt, Status: f.Status,
		TimeToDetectMS: max(f.DetectedAt.Sub(f.FirstEventAt).Milliseconds(), 0), AcknowledgedBy: f.AckedBy, AcknowledgedAt: f.AckedAt,
		ResolvedBy: f.ResolvedBy, ResolvedAt: f.ResolvedAt, Note: f.Note}
	if f.ContainedAt != nil {
		ms := max(f.ContainedAt.Sub(f.DetectedAt).Milliseconds(), 0)
		out.TimeToContainMS = &ms
	}
	return out
}

func (a *API) monitor() (*monitor.Monitor, error) {
	if a.o.Monitor == nil {
		return nil, warden.Errorf(warden.CodeNotFound, "behaviour monitoring is not enabled on this server")
	}
	return a.o.Monitor, nil
}

func (a *API) listFindings(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "identity", "severity", "status", "detector", "limit", "cursor":
		default:
			return warden.FieldError(k, "unknown query parameter (identity, severity, status, detector, limit, cursor)")
		}
	}
	f := monitor.Filter{Status: q.Get("status"), Detector: q.Get("detector"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be between 1 and 1000")
		}
		f.Limit = n
	}
	if v := q.Get("severity"); v != "" {
		for _, s := range strings.Split(v, ",") {
			sev, ok := monitor.ParseSeverity(strings.TrimSpace(s))
			if !ok {
				return warden.FieldError("severity", "must be info, low, medium, high or critical (or a comma-separated list of them)")
			}
			f.Severity = append(f.Severity, sev)
		}
	}
	if ref := q.Get("identity"); ref != "" {
		id, err := a.o.Identities.Get(r.Context(), principal(r), ref)
		if err != nil {
			return err
		}
		f.IdentityID = id.ID
	}
	fs, next, err := m.List(r.Context(), principal(r), f)
	if err != nil {
		return err
	}
	out := FindingList{Findings: make([]Finding, 0, len(fs)), NextCursor: next}
	for _, x := range fs {
		out.Findings = append(out.Findings, FindingOut(x))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getFinding(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	f, err := m.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, FindingOut(f))
}

func (a *API) updateFinding(resolve bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := a.monitor()
		if err != nil {
			return err
		}
		var in FindingUpdate
		if err := decode(r, &in, true); err != nil {
			return err
		}
		fn := m.Acknowledge
		if resolve {
			fn = m.Resolve
		}
		f, err := fn(r.Context(), principal(r), r.PathValue("id"), in.Note)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, FindingOut(f))
	}
}

func (a *API) tripBreaker(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	var in BreakerTrip
	if err := decode(r, &in, false); err != nil {
		return err
	}
	id, f, err := m.Trip(r.Context(), principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, BreakerTripped{Identity: identityOut(id), Finding: FindingOut(f)})
}

func (a *API) resetBreaker(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	var in BreakerTrip
	if err := decode(r, &in, true); err != nil {
		return err
	}
	id, was, err := m.Reset(r.Context(), principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, BreakerReset{Identity: identityOut(id), Throttled: was})
}

func (a *API) listThrottles(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	if !principal(r).HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return warden.Errorf(warden.CodeForbidden, "listing throttles needs the security or auditor role")
	}
	out := ThrottleList{Throttles: []Throttle{}}
	for _, t := range m.Throttles() {
		out.Throttles = append(out.Throttles, Throttle{Identity: t.IdentityID, Until: t.Until, Reason: t.Reason, Finding: t.Finding})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) pauseBreaker(resume bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := a.monitor()
		if err != nil {
			return err
		}
		var in BreakerPause
		if err := decode(r, &in, false); err != nil {
			return err
		}
		fn := m.Pause
		if resume {
			fn = m.Unpause
		}
		res, err := fn(r.Context(), principal(r), monitor.Selector{Owner: in.Owner, Labels: in.Labels}, in.Reason)
		if err != nil {
			return err
		}
		out := BreakerPaused{Identities: make([]apitype.Identity, 0, len(res.Changed)), Skipped: make([]BreakerSkipped, 0, len(res.Skipped))}
		for _, id := range res.Changed {
			out.Identities = append(out.Identities, identityOut(id))
		}
		for id, why := range res.Skipped {
			out.Skipped = append(out.Skipped, BreakerSkipped{Identity: id, Reason: why})
		}
		sort.Slice(out.Skipped, func(i, j int) bool { return out.Skipped[i].Identity < out.Skipped[j].Identity })
		return writeJSON(w, http.StatusOK, out)
	}
}
