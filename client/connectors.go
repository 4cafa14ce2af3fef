package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	"warden/apitype"
)

// PutConnector creates or replaces a connector from a YAML or JSON document
// (contentType "application/yaml" or "application/json"). The server
// compiles it first; a document that does not compile changes nothing.
func (c *Client) PutConnector(ctx context.Context, name string, doc []byte, contentType string) (*apitype.Connector, error) {
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+"/v1/connectors/"+url.PathEscape(name), bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	var out apitype.Connector
	return &out, c.send(req, &out)
}

// GetConnector returns a connector's summary: base URL, auth scheme and the
// compiled operations with their actions.
func (c *Client) GetConnector(ctx context.Context, name string) (*apitype.Connector, error) {
	var out apitype.Connector
	return &out, c.Do(ctx, "GET", "/v1/connectors/"+url.PathEscape(name), nil, &out)
}

// GetConnectorDocument returns a connector's document as it was stored, and
// its content type.
func (c *Client) GetConnectorDocument(ctx context.Context, name string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/connectors/"+url.PathEscape(name)+"?format=document", nil)
	if err != nil {
		return nil, "", err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		_ = json.Unmarshal(b, &e.Problem)
		return nil, "", e
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// ListConnectors lists the connectors in force.
func (c *Client) ListConnectors(ctx context.Context) (*apitype.ConnectorList, error) {
	var out apitype.ConnectorList
	return &out, c.Do(ctx, "GET", "/v1/connectors", nil, &out)
}

// DeleteConnector deletes a connector; calls through it fail from the next
// request on.
func (c *Client) DeleteConnector(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/v1/connectors/"+url.PathEscape(name), nil, nil)
}

// Catalog lists the built-in connector definitions a document can start
// from with from_catalog.
func (c *Client) Catalog(ctx context.Context) (*apitype.CatalogList, error) {
	var out apitype.CatalogList
	return &out, c.Do(ctx, "GET", "/v1/catalog", nil, &out)
}
