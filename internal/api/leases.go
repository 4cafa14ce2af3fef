package api

import (
	"net/http"
	"strconv"
	"time"

	"warden"
	"warden/apitype"
	"warden/internal/credential"
)

func leaseOut(l credential.LeaseInfo) apitype.Lease {
	return apitype.Lease{ID: l.ID, Credential: l.Credential, Connector: l.Connector, Identity: l.IdentityID, Role: l.Role, State: l.State,
		CreatedAt: l.CreatedAt, ExpiresAt: l.ExpiresAt, EndedAt: l.EndedAt, EndReason: l.EndReason, DroppedAt: l.DroppedAt}
}

// listLeases lists dynamic-credential leases: ?identity= (id or name),
// ?credential= (name), ?active=true, ?limit= (1-1000).
func (a *API) listLeases(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := principal(r)
	var f credential.LeaseFilter
	if v := q.Get("identity"); v != "" {
		id, err := a.o.Identities.Get(r.Context(), p, v)
		if err != nil {
			return err
		}
		f.IdentityID = id.ID
	}
	if v := q.Get("credential"); v != "" {
		c, err := a.o.Credentials.Get(r.Context(), p, v)
		if err != nil {
			return err
		}
		f.CredentialID = c.ID
	}
	switch q.Get("active") {
	case "", "false":
	case "true":
		f.ActiveAt = time.Now()
	default:
		return warden.FieldError("active", "must be true or false")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return warden.FieldError("limit", "must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	ls, err := a.o.Credentials.ListLeases(r.Context(), p, f)
	if err != nil {
		return err
	}
	out := apitype.LeaseList{Leases: make([]apitype.Lease, 0, len(ls))}
	for _, l := range ls {
		out.Leases = append(out.Leases, leaseOut(l))
	}
	return writeJSON(w, http.StatusOK, out)
}

// revokeLease ends a lease now and drops its role. When the database
// cannot be reached the lease is still ended (never handed out again) and
// the answer is 503: Warden drops the role when it can.
func (a *API) revokeLease(w http.ResponseWriter, r *http.Request) error {
	l, err := a.o.Credentials.RevokeLease(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, leaseOut(*l))
}

// credentialVersions lists a credential's secret versions (never the
// secrets): which is current, which are kept for their grace period.
func (a *API) credentialVersions(w http.ResponseWriter, r *http.Request) error {
	vs, err := a.o.Credentials.Versions(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	out := apitype.CredentialVersions{Versions: make([]apitype.CredentialVersion, 0, len(vs))}
	for _, v := range vs {
		out.Versions = append(out.Versions, apitype.CredentialVersion{Version: v.Version, State: v.State, CreatedAt: v.CreatedAt, RetireAt: v.RetireAt, RetiredAt: v.RetiredAt})
	}
	return writeJSON(w, http.StatusOK, out)
}
