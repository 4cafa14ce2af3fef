package api

import (
	"net/http"
	"time"

	"warden/apitype"
	"warden/internal/elevation"
)

func elevationOut(e *elevation.Elevation) apitype.Elevation {
	return apitype.Elevation{
		ID: e.ID, Identity: e.IdentityID, IdentityName: e.IdentityName, Actions: e.Actions, Resources: e.Resources,
		Duration: apitype.Duration(e.Duration), Reason: e.Reason, RequestedBy: e.RequestedBy, Status: e.Status,
		Policy: e.PolicyName(), CreatedAt: e.CreatedAt, DecidedAt: e.DecidedAt, DecidedBy: e.DecidedBy, Comment: e.Comment,
		ExpiresAt: e.ExpiresAt, RevokedAt: e.RevokedAt, RevokedBy: e.RevokedBy,
	}
}

func (a *API) requestElevation(w http.ResponseWriter, r *http.Request) error {
	var in apitype.CreateElevation
	if err := decode(r, &in, false); err != nil {
		return err
	}
	e, err := a.o.Elevations.Request(r.Context(), principal(r), elevation.RequestInput{
		Identity: in.Identity, Actions: in.Actions, Resources: in.Resources, Duration: time.Duration(in.Duration), Reason: in.Reason,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/elevations/"+e.ID)
	return writeJSON(w, http.StatusCreated, elevationOut(e))
}

func (a *API) listElevations(w http.ResponseWriter, r *http.Request) error {
	es, err := a.o.Elevations.List(r.Context(), principal(r), r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	out := apitype.ElevationList{Elevations: make([]apitype.Elevation, 0, len(es))}
	for _, e := range es {
		out.Elevations = append(out.Elevations, elevationOut(e))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getElevation(w http.ResponseWriter, r *http.Request) error {
	e, err := a.o.Elevations.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, elevationOut(e))
}

func (a *API) decideElevation(approve bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in apitype.ApprovalDecision
		if err := decode(r, &in, true); err != nil {
			return err
		}
		e, err := a.o.Elevations.Decide(r.Context(), principal(r), r.PathValue("id"), approve, in.Comment)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, elevationOut(e))
	}
}

func (a *API) revokeElevation(w http.ResponseWriter, r *http.Request) error {
	var in apitype.StatusRequest
	if err := decode(r, &in, true); err != nil {
		return err
	}
	e, err := a.o.Elevations.Revoke(r.Context(), principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, elevationOut(e))
}
