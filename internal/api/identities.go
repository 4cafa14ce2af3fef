package api

import (
	"net/http"
	"strconv"
	"strings"

	"warden"
	"warden/apitype"
	"warden/internal/identity"
)

func identityOut(id *identity.Identity) apitype.Identity {
	labels := id.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return apitype.Identity{
		ID: id.ID, Name: id.Name, Type: id.Type, Owner: id.Owner, Description: id.Description,
		Environment: id.Environment, Labels: labels, Status: id.Status, StatusReason: id.StatusReason,
		StatusActor: id.StatusActor, StatusChangedAt: id.StatusChangedAt, CreatedAt: id.CreatedAt,
		UpdatedAt: id.UpdatedAt, LastUsedAt: id.LastUsedAt,
	}
}

func (a *API) createIdentity(w http.ResponseWriter, r *http.Request) error {
	var in apitype.CreateIdentity
	if err := decode(r, &in, false); err != nil {
		return err
	}
	id, err := a.o.Identities.Create(r.Context(), principal(r), identity.CreateInput{
		Name: in.Name, Type: in.Type, Owner: in.Owner, Description: in.Description, Environment: in.Environment, Labels: in.Labels,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/identities/"+id.ID)
	return writeJSON(w, http.StatusCreated, identityOut(id))
}

func (a *API) listIdentities(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := identity.Filter{Type: q.Get("type"), Owner: q.Get("owner"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be a whole number between 1 and 1000")
		}
		f.Limit = n
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return warden.FieldError("label", "must be key=value")
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	ids, next, err := a.o.Identities.List(r.Context(), principal(r), f)
	if err != nil {
		return err
	}
	out := apitype.IdentityList{Identities: make([]apitype.Identity, 0, len(ids)), NextCursor: next}
	for _, id := range ids {
		out.Identities = append(out.Identities, identityOut(id))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getIdentity(w http.ResponseWriter, r *http.Request) error {
	id, err := a.o.Identities.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, identityOut(id))
}

func (a *API) updateIdentity(w http.ResponseWriter, r *http.Request) error {
	var in apitype.UpdateIdentity
	if err := decode(r, &in, false); err != nil {
		return err
	}
	id, err := a.o.Identities.Update(r.Context(), principal(r), r.PathValue("id"), identity.Patch{
		Type: in.Type, Owner: in.Owner, Description: in.Description, Environment: in.Environment, Labels: in.Labels,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, identityOut(id))
}

func (a *API) statusChange(w http.ResponseWriter, r *http.Request, fn func(p warden.Principal, ref, reason string) (*identity.Identity, error)) error {
	var in apitype.StatusRequest
	if err := decode(r, &in, true); err != nil {
		return err
	}
	id, err := fn(principal(r), r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, identityOut(id))
}

func (a *API) suspendIdentity(w http.ResponseWriter, r *http.Request) error {
	return a.statusChange(w, r, func(p warden.Principal, ref, reason string) (*identity.Identity, error) {
		return a.o.Identities.Suspend(r.Context(), p, ref, reason)
	})
}

func (a *API) resumeIdentity(w http.ResponseWriter, r *http.Request) error {
	return a.statusChange(w, r, func(p warden.Principal, ref, reason string) (*identity.Identity, error) {
		return a.o.Identities.Resume(r.Context(), p, ref, reason)
	})
}

// decommissionIdentity ends an identity. Its tokens and keys stop working at
// once through the status check; revoking the keys afterwards makes that
// durable even if the status were ever changed by hand.
func (a *API) decommissionIdentity(w http.ResponseWriter, r *http.Request) error {
	return a.statusChange(w, r, func(p warden.Principal, ref, reason string) (*identity.Identity, error) {
		id, err := a.o.Identities.Decommission(r.Context(), p, ref, reason)
		if err != nil {
			return nil, err
		}
		if err := a.o.Authn.RevokeIdentityKeys(r.Context(), id.ID); err != nil {
			a.o.Logger.Error("revoking keys of decommissioned identity", "identity", id.ID, "err", err)
		}
		return id, nil
	})
}

func (a *API) identityHistory(w http.ResponseWriter, r *http.Request) error {
	hist, err := a.o.Identities.History(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := apitype.StatusHistory{History: make([]apitype.StatusChange, 0, len(hist))}
	for _, h := range hist {
		out.History = append(out.History, apitype.StatusChange{Status: h.Status, Reason: h.Reason, Actor: h.Actor, At: h.At})
	}
	return writeJSON(w, http.StatusOK, out)
}

// whoami returns the calling identity.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	id, err := a.o.Identities.Cached(r.Context(), p.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, identityOut(id))
}
