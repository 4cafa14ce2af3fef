// Package client is the Go SDK for Warden's REST API. The CLI uses it, and
// so do the end-to-end tests.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"warden/apitype"
)

// Client talks to one Warden server with one bearer token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the server at addr (e.g. http://127.0.0.1:8700).
func New(addr, token string) *Client {
	return &Client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

// Error is a problem+json answer from the server.
type Error struct {
	Status  int
	Problem apitype.Problem
}

func (e *Error) Error() string {
	msg := e.Problem.Detail
	if e.Problem.Field != "" {
		msg = e.Problem.Field + ": " + msg
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s (%d %s)", msg, e.Status, e.Problem.Code)
}

// Do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, &e.Problem) != nil || e.Problem.Code == "" {
			var oe apitype.OAuthError
			if json.Unmarshal(b, &oe) == nil && oe.Code != "" {
				e.Problem = apitype.Problem{Code: oe.Code, Detail: oe.ErrorDescription, Status: resp.StatusCode}
			}
		}
		return e
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// CreateIdentity creates an identity.
func (c *Client) CreateIdentity(ctx context.Context, in apitype.CreateIdentity) (*apitype.Identity, error) {
	var out apitype.Identity
	return &out, c.Do(ctx, "POST", "/v1/identities", in, &out)
}

// GetIdentity returns an identity by id or name.
func (c *Client) GetIdentity(ctx context.Context, ref string) (*apitype.Identity, error) {
	var out apitype.Identity
	return &out, c.Do(ctx, "GET", "/v1/identities/"+url.PathEscape(ref), nil, &out)
}

// ListIdentities lists identities; q holds filters (type, owner, status,
// label=k=v, limit, cursor).
func (c *Client) ListIdentities(ctx context.Context, q url.Values) (*apitype.IdentityList, error) {
	var out apitype.IdentityList
	path := "/v1/identities"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return &out, c.Do(ctx, "GET", path, nil, &out)
}

// SetStatus suspends ("suspend"), resumes ("resume") or decommissions
// ("delete") an identity.
func (c *Client) SetStatus(ctx context.Context, ref, action, reason string) (*apitype.Identity, error) {
	var out apitype.Identity
	body := apitype.StatusRequest{Reason: reason}
	if action == "delete" {
		return &out, c.Do(ctx, "DELETE", "/v1/identities/"+url.PathEscape(ref), body, &out)
	}
	return &out, c.Do(ctx, "POST", "/v1/identities/"+url.PathEscape(ref)+"/"+action, body, &out)
}

// CreateKey issues an API key for an identity.
func (c *Client) CreateKey(ctx context.Context, ref string, expiresIn time.Duration) (*apitype.KeyCreated, error) {
	var out apitype.KeyCreated
	return &out, c.Do(ctx, "POST", "/v1/identities/"+url.PathEscape(ref)+"/keys", apitype.CreateKey{ExpiresIn: apitype.Duration(expiresIn)}, &out)
}

// ListKeys lists an identity's keys.
func (c *Client) ListKeys(ctx context.Context, ref string) (*apitype.KeyList, error) {
	var out apitype.KeyList
	return &out, c.Do(ctx, "GET", "/v1/identities/"+url.PathEscape(ref)+"/keys", nil, &out)
}

// RevokeKey revokes an API key.
func (c *Client) RevokeKey(ctx context.Context, ref, keyID string) error {
	return c.Do(ctx, "DELETE", "/v1/identities/"+url.PathEscape(ref)+"/keys/"+url.PathEscape(keyID), nil, nil)
}

// Token exchanges an API key for an access token (client credentials).
func (c *Client) Token(ctx context.Context, clientID, apiKey string) (*apitype.TokenResponse, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {apiKey}}
	if clientID != "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out apitype.TokenResponse
	cc := *c
	cc.token = ""
	return &out, cc.send(req, &out)
}

// Whoami returns the identity the client's token belongs to.
func (c *Client) Whoami(ctx context.Context) (*apitype.Identity, error) {
	var out apitype.Identity
	return &out, c.Do(ctx, "GET", "/v1/whoami", nil, &out)
}

// CreateAdminToken creates an admin token.
func (c *Client) CreateAdminToken(ctx context.Context, in apitype.CreateAdminToken) (*apitype.AdminToken, error) {
	var out apitype.AdminToken
	return &out, c.Do(ctx, "POST", "/v1/admin-tokens", in, &out)
}

// ListAdminTokens lists admin tokens.
func (c *Client) ListAdminTokens(ctx context.Context) (*apitype.AdminTokenList, error) {
	var out apitype.AdminTokenList
	return &out, c.Do(ctx, "GET", "/v1/admin-tokens", nil, &out)
}

// RevokeAdminToken revokes an admin token.
func (c *Client) RevokeAdminToken(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/admin-tokens/"+url.PathEscape(id), nil, nil)
}

// PutPolicy creates or replaces a policy from a YAML or JSON document.
func (c *Client) PutPolicy(ctx context.Context, name string, doc []byte, contentType string) (*apitype.Policy, error) {
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+"/v1/policies/"+url.PathEscape(name), bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	var out apitype.Policy
	return &out, c.send(req, &out)
}

// GetPolicy returns a policy document in the given format
// ("application/yaml" or "application/json"; "" for as stored).
func (c *Client) GetPolicy(ctx context.Context, name, format string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/policies/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if format != "" {
		req.Header.Set("Accept", format)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		e := &Error{Status: resp.StatusCode}
		_ = json.Unmarshal(b, &e.Problem)
		return nil, e
	}
	return b, nil
}

// ListPolicies lists policies.
func (c *Client) ListPolicies(ctx context.Context) (*apitype.PolicyList, error) {
	var out apitype.PolicyList
	return &out, c.Do(ctx, "GET", "/v1/policies", nil, &out)
}

// DeletePolicy deletes a policy.
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/v1/policies/"+url.PathEscape(name), nil, nil)
}

// Authorize asks for a decision.
func (c *Client) Authorize(ctx context.Context, in apitype.AuthorizeRequest) (*apitype.Decision, error) {
	var out apitype.Decision
	return &out, c.Do(ctx, "POST", "/v1/authorize", in, &out)
}
