package api

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"warden"
	"warden/apitype"
	"warden/internal/monitor"
)

// FindingOut converts a finding to its wire form.
func FindingOut(f *monitor.Finding) apitype.Finding {
	out := apitype.Finding{ID: f.ID, Identity: f.IdentityID, IdentityName: f.IdentityName, Owner: f.Owner, KeyID: f.KeyID, Detector: f.Detector,
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
	out := apitype.FindingList{Findings: make([]apitype.Finding, 0, len(fs)), NextCursor: next}
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
		var in apitype.FindingUpdate
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
	var in apitype.BreakerTrip
	if err := decode(r, &in, false); err != nil {
		return err
	}
	id, f, err := m.Trip(r.Context(), principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.BreakerTripped{Identity: identityOut(id), Finding: FindingOut(f)})
}

func (a *API) resetBreaker(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	var in apitype.BreakerTrip
	if err := decode(r, &in, true); err != nil {
		return err
	}
	id, was, err := m.Reset(r.Context(), principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.BreakerReset{Identity: identityOut(id), Throttled: was})
}

func (a *API) listThrottles(w http.ResponseWriter, r *http.Request) error {
	m, err := a.monitor()
	if err != nil {
		return err
	}
	if !principal(r).HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return warden.Errorf(warden.CodeForbidden, "listing throttles needs the security or auditor role")
	}
	out := apitype.ThrottleList{Throttles: []apitype.Throttle{}}
	for _, t := range m.Throttles() {
		out.Throttles = append(out.Throttles, apitype.Throttle{Identity: t.IdentityID, Until: t.Until, Reason: t.Reason, Finding: t.Finding})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) pauseBreaker(resume bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := a.monitor()
		if err != nil {
			return err
		}
		var in apitype.BreakerPause
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
		out := apitype.BreakerPaused{Identities: make([]apitype.Identity, 0, len(res.Changed)), Skipped: make([]apitype.BreakerSkipped, 0, len(res.Skipped))}
		for _, id := range res.Changed {
			out.Identities = append(out.Identities, identityOut(id))
		}
		for id, why := range res.Skipped {
			out.Skipped = append(out.Skipped, apitype.BreakerSkipped{Identity: id, Reason: why})
		}
		sort.Slice(out.Skipped, func(i, j int) bool { return out.Skipped[i].Identity < out.Skipped[j].Identity })
		return writeJSON(w, http.StatusOK, out)
	}
}
