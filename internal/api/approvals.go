package api

import (
	"net/http"
	"strconv"

	"warden"
	"warden/apitype"
	"warden/internal/approval"
)

func approvalOut(a *approval.Approval) apitype.Approval {
	return apitype.Approval{
		ID: a.ID, Identity: a.IdentityID, IdentityName: a.IdentityName, Owner: a.Owner, Action: a.Action, Method: a.Method,
		Path: a.Path, Resource: a.Resource, Fingerprint: a.Fingerprint, Policy: a.Policy, Rule: a.Rule, Reason: a.Reason,
		Status: a.Status, UsesLeft: a.UsesLeft, Required: a.Required, Approvers: a.Approvers, ApprovedBy: a.ApprovedBy, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, DecidedAt: a.DecidedAt,
		DecidedBy: a.DecidedBy, Comment: a.Comment, UsedAt: a.UsedAt,
	}
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) error {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be between 1 and 1000")
		}
		limit = n
	}
	as, err := a.o.Approvals.List(r.Context(), principal(r), r.URL.Query().Get("status"), limit)
	if err != nil {
		return err
	}
	out := apitype.ApprovalList{Approvals: make([]apitype.Approval, 0, len(as))}
	for _, x := range as {
		out.Approvals = append(out.Approvals, approvalOut(x))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getApproval(w http.ResponseWriter, r *http.Request) error {
	x, err := a.o.Approvals.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, approvalOut(x))
}

func (a *API) decideApproval(approve bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in apitype.ApprovalDecision
		if err := decode(r, &in, true); err != nil {
			return err
		}
		x, err := a.o.Approvals.Decide(r.Context(), principal(r), r.PathValue("id"), approve, in.Comment)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, approvalOut(x))
	}
}
