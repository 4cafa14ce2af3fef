package api

import (
	"errors"
	"mime"
	"net/http"
	"net/url"

	"warden"
	"warden/apitype"
)

// token is the OAuth2 token endpoint (RFC 6749 section 4.4): the client
// credentials grant, with the API key as client secret, sent in the form
// body or with HTTP Basic authentication. Errors follow RFC 6749 5.2.
func (a *API) token(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return oauthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded", warden.CodeInvalid)
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return warden.Errorf(warden.CodeTooLarge, "request body too large")
		}
		return oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body", warden.CodeInvalid)
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials", warden.CodeInvalid)
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		if secret != "" {
			return oauthError(w, http.StatusBadRequest, "invalid_request", "send client credentials in the body or with Basic auth, not both", warden.CodeInvalid)
		}
		// RFC 6749 2.3.1: Basic credentials are form-urlencoded first.
		if du, err := url.QueryUnescape(u); err == nil {
			u = du
		}
		if dp, err := url.QueryUnescape(p); err == nil {
			p = dp
		}
		clientID, secret = u, p
	}
	if secret == "" {
		return oauthError(w, http.StatusUnauthorized, "invalid_client", "client_secret (the API key) is required", warden.CodeUnauthenticated)
	}
	tok, err := a.o.Authn.IssueToken(r.Context(), clientID, secret)
	if err != nil {
		switch code := warden.ErrorCode(err); code {
		case warden.CodeUnauthenticated, warden.CodeIdentitySuspended, warden.CodeIdentityDecommissioned:
			var we *warden.Error
			errors.As(err, &we)
			return oauthError(w, http.StatusUnauthorized, "invalid_client", we.Message, code)
		}
		return err
	}
	w.Header().Set("Pragma", "no-cache")
	return writeJSON(w, http.StatusOK, apitype.TokenResponse{AccessToken: tok.AccessToken.Reveal(), TokenType: "Bearer", ExpiresIn: tok.ExpiresIn})
}

func oauthError(w http.ResponseWriter, status int, kind, desc string, code warden.Code) error {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="warden"`)
	}
	return writeJSON(w, status, apitype.OAuthError{Error: kind, ErrorDescription: desc, Code: string(code)})
}

// revokeToken revokes the caller's own access token (RFC 7009): form field
// "token". Unknown or invalid tokens are not an error.
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return warden.FieldError("token", "send the token as a form field")
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		return warden.FieldError("token", "is required")
	}
	if err := a.o.Authn.RevokeToken(r.Context(), principal(r), tok); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
