package api

import (
	"net/http"
	"strconv"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/credential"
)

func credentialOut(c *credential.Credential) apitype.Credential {
	out := apitype.Credential{
		ID: c.ID, Name: c.Name, Type: c.Type, Connector: c.Connector, Identity: c.IdentityID, Owner: c.Owner,
		Description: c.Description, Config: c.Config, ExpiresAt: c.ExpiresAt, Version: c.Version, CreatedAt: c.CreatedAt,
		CreatedBy: c.CreatedBy, UpdatedAt: c.UpdatedAt, RotatedAt: c.RotatedAt, LastUsedAt: c.LastUsedAt,
		RotationDue: c.RotationDue(time.Now()),
	}
	if c.Rotation > 0 || c.RotationGrace > 0 {
		out.Rotation = &apitype.Rotation{Every: apitype.Duration(c.Rotation), Grace: apitype.Duration(c.RotationGrace)}
	}
	return out
}

// createCredential stores a credential; the answer carries metadata only.
// An identity given by name is resolved to its id so the binding survives
// nothing but the identity itself.
func (a *API) createCredential(w http.ResponseWriter, r *http.Request) error {
	var in apitype.CreateCredential
	if err := decode(r, &in, false); err != nil {
		return err
	}
	p := principal(r)
	identityID, err := a.identityRef(r, p, in.Identity)
	if err != nil {
		return err
	}
	ci := credential.CreateInput{
		Name: in.Name, Type: in.Type, Connector: in.Connector, Identity: identityID, Owner: in.Owner,
		Description: in.Description, Config: in.Config, ExpiresAt: in.ExpiresAt, Secret: in.Secret,
	}
	if in.Rotation != nil {
		ci.Rotation = time.Duration(in.Rotation.Every)
		ci.RotationGrace = time.Duration(in.Rotation.Grace)
	}
	c, err := a.o.Credentials.Create(r.Context(), p, ci)
	clear(in.Secret)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/credentials/"+c.Name)
	return writeJSON(w, http.StatusCreated, credentialOut(c))
}

func (a *API) listCredentials(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.o.Credentials.List(r.Context(), principal(r), r.URL.Query().Get("connector"))
	if err != nil {
		return err
	}
	overdue := r.URL.Query().Get("rotation") == "overdue"
	if v := r.URL.Query().Get("rotation"); v != "" && v != "overdue" {
		return warden.FieldError("rotation", "the only filter is rotation=overdue")
	}
	out := apitype.CredentialList{Credentials: make([]apitype.Credential, 0, len(cs))}
	now := time.Now()
	for _, c := range cs {
		if overdue && !c.RotationDue(now) {
			continue
		}
		out.Credentials = append(out.Credentials, credentialOut(c))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getCredential(w http.ResponseWriter, r *http.Request) error {
	c, err := a.o.Credentials.Get(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, credentialOut(c))
}

func (a *API) updateCredential(w http.ResponseWriter, r *http.Request) error {
	var in apitype.UpdateCredential
	if err := decode(r, &in, false); err != nil {
		return err
	}
	patch := credential.Patch{Owner: in.Owner, Description: in.Description, Config: in.Config}
	if in.Rotation != nil {
		d, g := time.Duration(in.Rotation.Every), time.Duration(in.Rotation.Grace)
		patch.Rotation = &d
		if g != 0 {
			patch.RotationGrace = &g
		}
	}
	if in.ExpiresAt != nil {
		patch.ExpiresAt = &in.ExpiresAt
	}
	c, err := a.o.Credentials.Update(r.Context(), principal(r), r.PathValue("name"), patch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, credentialOut(c))
}

func (a *API) rotateCredential(w http.ResponseWriter, r *http.Request) error {
	var in apitype.RotateCredential
	if err := decode(r, &in, false); err != nil {
		return err
	}
	c, err := a.o.Credentials.Rotate(r.Context(), principal(r), r.PathValue("name"), in.Secret)
	clear(in.Secret)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, credentialOut(c))
}

func (a *API) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	if err := a.o.Credentials.Delete(r.Context(), principal(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// identityRef resolves an optional identity reference (id or name) in a
// request body to its id, as p may see it. An empty reference is "" (no
// binding); an unknown one is a 400 naming the field; other errors (the
// database unavailable) pass through.
func (a *API) identityRef(r *http.Request, p warden.Principal, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	id, err := a.o.Identities.Get(r.Context(), p, ref)
	if warden.IsCode(err, warden.CodeNotFound) {
		return "", &warden.Error{Code: warden.CodeInvalid, Field: "identity", Message: "no identity " + strconv.Quote(ref)}
	}
	if err != nil {
		return "", err
	}
	return id.ID, nil
}
