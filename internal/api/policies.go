package api

import (
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	"warden"
	"warden/apitype"
	"warden/internal/gate"
	"warden/internal/policy"
)

func policyOut(p *policy.Stored) apitype.Policy {
	return apitype.Policy{Name: p.Name, Version: p.Version, ContentType: p.ContentType, UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy, Deleted: p.Deleted}
}

// putPolicy takes a YAML or JSON document. The answer is the stored
// metadata; the document is compiled before it is saved.
func (a *API) putPolicy(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	st, created, err := a.o.Policies.Put(r.Context(), principal(r), r.PathValue("name"), body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, policyOut(st))
}

// getPolicy serves the document as stored, or converted when the Accept
// header asks for the other format (application/json or application/yaml).
func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) error {
	st, err := a.o.Policies.Get(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	body, ct := st.Document, st.ContentType
	if want := acceptFormat(r.Header.Get("Accept")); want != "" && want != st.ContentType {
		doc, err := policy.Parse(st.Document, st.ContentType)
		if err != nil {
			return warden.Wrap(err, warden.CodeInternal, "stored policy does not parse")
		}
		if body, err = doc.Encode(want); err != nil {
			return err
		}
		ct = want
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Warden-Policy-Version", itoa(int(st.Version)))
	_, err = w.Write(body)
	return err
}

// acceptFormat picks YAML or JSON from an Accept header, "" for either.
func acceptFormat(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json":
			return policy.ContentTypeJSON
		case "application/yaml", "text/yaml", "application/x-yaml":
			return policy.ContentTypeYAML
		}
	}
	return ""
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.o.Policies.List(r.Context(), principal(r))
	if err != nil {
		return err
	}
	out := apitype.PolicyList{Policies: make([]apitype.Policy, 0, len(ps))}
	for i := range ps {
		out.Policies = append(out.Policies, policyOut(&ps[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) policyVersions(w http.ResponseWriter, r *http.Request) error {
	vs, err := a.o.Policies.Versions(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	out := apitype.PolicyVersions{Versions: make([]apitype.Policy, 0, len(vs))}
	for i := range vs {
		out.Versions = append(out.Versions, policyOut(&vs[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := a.o.Policies.Delete(r.Context(), principal(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authorize answers a decision question. 200 for every well-formed question,
// whatever the decision; 400 only for a malformed one. An admin may ask
// about any identity; an identity only about itself.
func (a *API) authorize(w http.ResponseWriter, r *http.Request) error {
	var in apitype.AuthorizeRequest
	if err := decode(r, &in, false); err != nil {
		return err
	}
	p := principal(r)
	if in.Identity == "" {
		return warden.FieldError("identity", "is required (an identity id or name)")
	}
	if _, _, err := policy.ParseAction(in.Action); err != nil {
		return &warden.Error{Code: warden.CodeInvalid, Field: "action", Message: "must be connector:operation (lowercase letters, digits, '.', '_', '-')"}
	}
	q := gate.Question{Identity: in.Identity, Action: in.Action, Resource: in.Resource, Params: in.Params, Context: in.Context, DryRun: in.DryRun, Explain: in.Explain}
	if in.Request != nil {
		if in.Request.IP != "" && net.ParseIP(in.Request.IP) == nil {
			return warden.FieldError("request.ip", "is not an IP address")
		}
		if in.Request.Time != nil {
			q.Time = *in.Request.Time
		}
		q.IP, q.Method, q.Path = in.Request.IP, in.Request.Method, in.Request.Path
	}
	switch {
	case p.Kind == warden.PrincipalIdentity:
		if in.Identity != p.ID && in.Identity != p.Subject {
			return warden.Errorf(warden.CodeForbidden, "an identity may ask only about itself")
		}
		if in.Request != nil && in.Request.Time != nil {
			return warden.FieldError("request.time", "only an admin may ask about another time")
		}
		if q.IP == "" {
			q.IP = clientIP(r)
		}
	case !p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover, warden.RoleOwner):
		return warden.Errorf(warden.CodeForbidden, "asking for decisions needs an admin role")
	}
	d, id, err := a.o.Gate.Decide(r.Context(), q)
	if err != nil {
		return err
	}
	if p.IsAdmin() && !p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover) && (id == nil || id.Owner != p.Subject) {
		return warden.Errorf(warden.CodeNotFound, "identity %q not found", in.Identity)
	}
	return writeJSON(w, http.StatusOK, decisionOut(d))
}

func decisionOut(d policy.Decision) apitype.Decision {
	out := apitype.Decision{Decision: string(d.Effect), Code: string(d.Code), Reason: d.Reason, Policy: d.Policy, Rule: d.Rule, RetryAfter: d.RetryAfterSeconds()}
	for _, m := range d.Matched {
		out.Matched = append(out.Matched, apitype.DecisionMatch{Policy: m.Policy, Rule: m.Rule, Effect: string(m.Effect), Error: m.Error})
	}
	for _, t := range d.Trace {
		out.Trace = append(out.Trace, apitype.DecisionTrace{Policy: t.Policy, Rule: t.Rule, Effect: string(t.Effect), Result: t.Result, Detail: t.Detail})
	}
	return out
}

// clientIP is the peer address (proxy headers are not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
