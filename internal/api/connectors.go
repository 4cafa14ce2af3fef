package api

import (
	"io"
	"net/http"

	"warden/apitype"
	"warden/internal/connector"
)

func connectorOut(c *connector.Connector, st *connector.Stored) apitype.Connector {
	out := apitype.Connector{Name: c.Name, BaseURL: c.Base.String(), Auth: c.Doc.Auth.Type, Description: c.Doc.Description}
	if st != nil {
		out.Version, out.UpdatedAt, out.UpdatedBy = st.Version, st.UpdatedAt, st.UpdatedBy
	}
	for _, op := range c.Operations() {
		out.Operations = append(out.Operations, apitype.ConnectorOp{ID: op.ID, Action: op.Action, Method: op.Method, Path: op.Operation.Path, Class: op.Class, Description: op.Description})
	}
	return out
}

func (a *API) putConnector(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	st, created, err := a.o.Connectors.Put(r.Context(), principal(r), r.PathValue("name"), body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	c, _ := a.o.Connectors.Get(st.Name)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, connectorOut(c, st))
}

func (a *API) getConnector(w http.ResponseWriter, r *http.Request) error {
	st, err := a.o.Connectors.GetStored(r.Context(), principal(r), r.PathValue("name"))
	if err != nil {
		return err
	}
	if acceptFormat(r.Header.Get("Accept")) == "" || r.URL.Query().Get("format") == "document" {
		w.Header().Set("Content-Type", st.ContentType)
		_, err = w.Write(st.Document)
		return err
	}
	c, ok := a.o.Connectors.Get(st.Name)
	if !ok {
		return writeJSON(w, http.StatusOK, apitype.Connector{Name: st.Name, Version: st.Version})
	}
	return writeJSON(w, http.StatusOK, connectorOut(c, st))
}

func (a *API) listConnectors(w http.ResponseWriter, r *http.Request) error {
	if err := connector.CheckRead(principal(r)); err != nil {
		return err
	}
	out := apitype.ConnectorList{Connectors: []apitype.Connector{}}
	for _, c := range a.o.Connectors.All() {
		out.Connectors = append(out.Connectors, connectorOut(c, nil))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) deleteConnector(w http.ResponseWriter, r *http.Request) error {
	if err := a.o.Connectors.Delete(r.Context(), principal(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// catalog lists the built-in connector definitions.
func (a *API) catalog(w http.ResponseWriter, r *http.Request) error {
	out := apitype.CatalogList{Connectors: []apitype.Connector{}}
	if a.o.Catalog == nil {
		return writeJSON(w, http.StatusOK, out)
	}
	for _, name := range a.o.Catalog.Names() {
		d, _ := a.o.Catalog.Get(name)
		d.AllowPrivateNetwork = true // compile-only: catalog URLs are public https
		c, err := connector.Compile(d, "")
		if err != nil {
			return err
		}
		out.Connectors = append(out.Connectors, connectorOut(c, nil))
	}
	return writeJSON(w, http.StatusOK, out)
}

// execute calls an operation by name (POST /v1/execute).
func (a *API) execute(w http.ResponseWriter, r *http.Request) error {
	var in apitype.ExecuteRequest
	if err := decode(r, &in, false); err != nil {
		return err
	}
	a.o.Proxy.Execute(w, r, principal(r), in)
	return nil
}
