package api

import (
	"net/http"
	"strconv"

	"warden"
	"warden/apitype"
	"warden/internal/credential"
	"warden/internal/discovery"
)

func discoveryOut(d *discovery.Discovery) apitype.Discovery {
	out := apitype.Discovery{ID: d.ID, Fingerprint: d.Fingerprint, Rule: d.Rule, Kind: d.Kind, Preview: d.Preview, Verified: d.Verified,
		Status: d.Status, Identity: d.IdentityID, Owner: d.Owner, Note: d.Note, Credential: d.CredentialID, FirstSeen: d.FirstSeen,
		LastSeen: d.LastSeen, Locations: make([]apitype.DiscoveryLocation, 0, len(d.Locations))}
	for _, l := range d.Locations {
		out.Locations = append(out.Locations, apitype.DiscoveryLocation{Source: l.Source, File: l.File, Line: l.Line, Commit: l.Commit, Author: l.Author, SeenAt: l.SeenAt})
	}
	return out
}

func (a *API) reportDiscoveries(w http.ResponseWriter, r *http.Request) error {
	var in apitype.DiscoveryReport
	if err := decode(r, &in, false); err != nil {
		return err
	}
	fs := make([]discovery.Reported, 0, len(in.Findings))
	for _, f := range in.Findings {
		fs = append(fs, discovery.Reported{Rule: f.Rule, Kind: f.Kind, File: f.File, Line: f.Line, Commit: f.Commit, Author: f.Author, Fingerprint: f.Fingerprint, Preview: f.Preview, Verified: f.Verified})
	}
	created, updated, err := a.o.Inventory.Report(r.Context(), principal(r), in.Source, fs)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.DiscoveryReportResult{Created: created, Updated: updated})
}

func (a *API) listDiscoveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := discovery.InventoryFilter{Status: q.Get("status"), Kind: q.Get("kind"), Rule: q.Get("rule")}
	if v := q.Get("identity"); v != "" {
		id, err := a.o.Identities.Get(r.Context(), principal(r), v)
		if err != nil {
			return err
		}
		f.IdentityID = id.ID
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be between 1 and 1000")
		}
		f.Limit = n
	}
	ds, err := a.o.Inventory.List(r.Context(), principal(r), f)
	if err != nil {
		return err
	}
	out := apitype.DiscoveryList{Discoveries: make([]apitype.Discovery, 0, len(ds))}
	for _, d := range ds {
		out.Discoveries = append(out.Discoveries, discoveryOut(d))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getDiscovery(w http.ResponseWriter, r *http.Request) error {
	d, err := a.o.Inventory.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, discoveryOut(d))
}

func (a *API) resolveDiscovery(w http.ResponseWriter, r *http.Request) error {
	var in apitype.ResolveDiscovery
	if err := decode(r, &in, false); err != nil {
		return err
	}
	identityID, err := a.identityRef(r, principal(r), in.Identity)
	if err != nil {
		return err
	}
	d, err := a.o.Inventory.Resolve(r.Context(), principal(r), r.PathValue("id"), discovery.ResolveInput{Status: in.Status, IdentityID: identityID, Owner: in.Owner, Note: in.Note})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, discoveryOut(d))
}

// vaultDiscovery moves a discovered secret into the vault in one step: the
// credential is created, then the discovery is marked vaulted (and shows up
// for rotation like any credential).
func (a *API) vaultDiscovery(w http.ResponseWriter, r *http.Request) error {
	var in apitype.VaultDiscovery
	if err := decode(r, &in, false); err != nil {
		return err
	}
	defer clear(in.Secret)
	p := principal(r)
	d, err := a.o.Inventory.Get(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if d.Status == discovery.StatusVaulted {
		return warden.Errorf(warden.CodeConflict, "discovery %s is already vaulted as %s", d.ID, d.CredentialID)
	}
	identityID, err := a.identityRef(r, p, in.Identity)
	if err != nil {
		return err
	}
	c, err := a.o.Credentials.Create(r.Context(), p, credential.CreateInput{
		Name: in.Name, Type: in.Type, Connector: in.Connector, Identity: identityID, Owner: d.Owner, Secret: in.Secret,
		Description: "Vaulted from discovery " + d.ID + " (" + d.Kind + ")",
	})
	if err != nil {
		return err
	}
	d, err = a.o.Inventory.Vaulted(r.Context(), p, d.ID, c.ID, identityID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, discoveryOut(d))
}
