package api

import (
	"net/http"
	"strconv"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/authn"
)

func keyOut(k *authn.Key) apitype.Key {
	return apitype.Key{KeyID: k.ID, Identity: k.IdentityID, Hint: k.Hint, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt}
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request) error {
	var in apitype.CreateKey
	if err := decode(r, &in, true); err != nil {
		return err
	}
	k, secret, err := a.o.Authn.CreateKey(r.Context(), principal(r), r.PathValue("id"), time.Duration(in.ExpiresIn))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, apitype.KeyCreated{KeyID: k.ID, Key: secret.Reveal(), Identity: k.IdentityID, ExpiresAt: k.ExpiresAt})
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.o.Authn.ListKeys(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := apitype.KeyList{Keys: make([]apitype.Key, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyOut(k))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if err := a.o.Authn.RevokeKey(r.Context(), principal(r), r.PathValue("id"), r.PathValue("key_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func adminTokenOut(t *authn.AdminToken) apitype.AdminToken {
	return apitype.AdminToken{ID: t.ID, Name: t.Name, Subject: t.Subject, Roles: t.Roles, Hint: t.Hint, CreatedAt: t.CreatedAt,
		CreatedBy: t.CreatedBy, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt, LastUsedAt: t.LastUsedAt}
}

func (a *API) createAdminToken(w http.ResponseWriter, r *http.Request) error {
	var in apitype.CreateAdminToken
	if err := decode(r, &in, false); err != nil {
		return err
	}
	t, secret, err := a.o.Authn.CreateAdminToken(r.Context(), principal(r), in.Name, in.Subject, in.Roles, time.Duration(in.ExpiresIn))
	if err != nil {
		return err
	}
	out := adminTokenOut(t)
	out.Token = secret.Reveal()
	return writeJSON(w, http.StatusCreated, out)
}

func (a *API) listAdminTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.o.Authn.ListAdminTokens(r.Context(), principal(r))
	if err != nil {
		return err
	}
	out := apitype.AdminTokenList{AdminTokens: make([]apitype.AdminToken, 0, len(ts))}
	for _, t := range ts {
		out.AdminTokens = append(out.AdminTokens, adminTokenOut(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeAdminToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.o.Authn.RevokeAdminToken(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listChanges(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	if !p.HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return warden.Errorf(warden.CodeForbidden, "reading the change log needs the admin, security or auditor role")
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be between 1 and 1000")
		}
		limit = n
	}
	cs, err := a.o.Changes.ListChanges(r.Context(), r.URL.Query().Get("target"), limit)
	if err != nil {
		return err
	}
	out := apitype.ChangeList{Changes: make([]apitype.Change, 0, len(cs))}
	for _, c := range cs {
		out.Changes = append(out.Changes, apitype.Change{ID: c.ID, At: c.At, Actor: c.Actor, Action: c.Action, TargetKind: c.TargetKind, Target: c.Target, Detail: c.Detail})
	}
	return writeJSON(w, http.StatusOK, out)
}
