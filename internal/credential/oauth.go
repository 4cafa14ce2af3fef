package credential

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"warden"
)

// OAuth 2.0 credential types. Warden holds the long-lived secret (client
// secret or refresh token), fetches access tokens itself and hands the
// injector only the access token (Material field "token").
const (
	// TypeOAuth2ClientCredentials: secret {client_id, client_secret};
	// config {token_url, scopes?, client_auth?, allow_private_network?}.
	TypeOAuth2ClientCredentials = "oauth2_client_credentials"
	// TypeOAuth2RefreshToken: secret {refresh_token, client_id?,
	// client_secret?}; config {token_url, scopes?, client_auth?,
	// allow_private_network?}. A refresh token the provider rotates is
	// stored as a new sealed version.
	TypeOAuth2RefreshToken = "oauth2_refresh_token"
)

func init() {
	registerSpec(TypeOAuth2ClientCredentials, &typeSpec{required: []string{"client_id", "client_secret"}, config: oauthConfig})
	registerSpec(TypeOAuth2RefreshToken, &typeSpec{
		required: []string{"refresh_token"}, optional: []string{"client_id", "client_secret"}, config: oauthConfig,
		secret: func(f map[string]string) error {
			if f["client_secret"] != "" && f["client_id"] == "" {
				return warden.FieldError("secret.client_id", "is required when client_secret is given")
			}
			return nil
		},
	})
}

func isOAuth(typ string) bool {
	return typ == TypeOAuth2ClientCredentials || typ == TypeOAuth2RefreshToken
}

// maxTokenResponse bounds a token endpoint's answer.
const maxTokenResponse = 1 << 20

// oauthConfig checks an OAuth credential's config: token_url is required
// and must be https unless private networks are allowed (the credential's
// allow_private_network, or dev mode); unknown keys are refused (a typo
// must not silently drop a scope).
func oauthConfig(cfg map[string]any, o *Options) error {
	for k := range cfg {
		switch k {
		case "token_url", "scopes", "client_auth", "allow_private_network":
		default:
			return warden.FieldError("config."+k, "is not a setting of OAuth credentials (token_url, scopes, client_auth, allow_private_network)")
		}
	}
	if v, ok := cfg["allow_private_network"]; ok {
		if _, isBool := v.(bool); !isBool {
			return warden.FieldError("config.allow_private_network", "must be true or false")
		}
	}
	raw, _ := cfg["token_url"].(string)
	if raw == "" {
		return warden.FieldError("config.token_url", "is required: the OAuth token endpoint")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return warden.FieldError("config.token_url", "must be an absolute https URL without credentials or fragment")
	}
	if u.Scheme == "http" && !allowPrivate(cfg, o) {
		return warden.FieldError("config.token_url", "must use https (plain http only with allow_private_network or in dev mode)")
	}
	if _, err := scopes(cfg); err != nil {
		return err
	}
	switch cfg["client_auth"] {
	case nil, "basic", "body":
	default:
		return warden.FieldError("config.client_auth", "must be basic (HTTP Basic, the default) or body (client_id and client_secret in the form)")
	}
	return nil
}

func allowPrivate(cfg map[string]any, o *Options) bool {
	b, _ := cfg["allow_private_network"].(bool)
	return b || o.Dev
}

var scopeRE = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]+$`) // RFC 6749 scope-token

// scopes reads config.scopes: a list of scope tokens or one space-separated
// string.
func scopes(cfg map[string]any) ([]string, error) {
	var out []string
	switch v := cfg["scopes"].(type) {
	case nil:
		return nil, nil
	case string:
		out = strings.Fields(v)
	case []string:
		out = v
	case []any:
		for _, x := range v {
			sx, ok := x.(string)
			if !ok {
				return nil, warden.FieldError("config.scopes", "must be a list of strings")
			}
			out = append(out, sx)
		}
	default:
		return nil, warden.FieldError("config.scopes", "must be a list of strings")
	}
	for _, sc := range out {
		if !scopeRE.MatchString(sc) {
			return nil, warden.FieldError("config.scopes", "scope %q is not a valid OAuth scope token", sc)
		}
	}
	return out, nil
}

// newTokenClient builds the HTTP client for token endpoints. It never
// follows redirects (a redirect would carry the client secret elsewhere)
// and ignores proxy variables. Unless private is set, it refuses to dial
// loopback, private, link-local and other non-public addresses, after DNS
// resolution (no rebinding around the check).
func newTokenClient(o Options, private bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !private {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !publicAddr(ap.Addr()) {
				return errPrivateAddr
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: o.HTTPTimeout,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var errPrivateAddr = errors.New("token endpoint resolves to a non-public address (set allow_private_network on the credential to allow it)")

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

// tokenState is the access token of one OAuth credential, shared by every
// identity it serves.
type tokenState struct {
	tok  atomic.Pointer[accessToken]
	used atomic.Bool // served since the last background refresh
	// pending holds a rotated refresh token the provider returned that
	// could not be stored yet (store down); guarded by the credential's
	// slow-path lock. Using it keeps the chain alive: the provider has
	// usually invalidated the stored one.
	pending *pendingRefresh
}

type pendingRefresh struct {
	base   int64 // the credential version it supersedes
	fields map[string]string
}

type accessToken struct {
	value      warden.Secret
	version    int64     // credential version whose secret obtained it
	expires    time.Time // when the provider says it expires
	refreshAt  time.Time // when Warden fetches a new one
	serveUntil time.Time // cache bound for material built from it
}

func (s *Service) tokenStateFor(id string) *tokenState {
	v, ok := s.tokens.Load(id)
	if !ok {
		v, _ = s.tokens.LoadOrStore(id, new(tokenState))
	}
	return v.(*tokenState)
}

// accessToken returns a usable access token for cred: the held one while it
// is before its refresh time and from the current secret version, otherwise
// a fresh one. If fetching fails, a held token that has not expired yet is
// served (the provider's trouble must not cut calls that still work) and
// the fetch is retried after a short backoff; without one the call fails
// with credential_unavailable.
func (s *Service) accessToken(ctx context.Context, cred *Credential, now time.Time) (*tokenState, *accessToken, error) {
	st := s.tokenStateFor(cred.ID)
	if t := st.tok.Load(); t != nil && t.version == cred.Version && now.Before(t.refreshAt) {
		return st, t, nil
	}
	unlock, err := s.lock(ctx, "oauth\x00"+cred.ID)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if t := st.tok.Load(); t != nil && t.version == cred.Version && now.Before(t.refreshAt) {
		return st, t, nil // another caller fetched it meanwhile
	}
	t, err := s.fetchToken(ctx, cred, st, now)
	if err != nil {
		if old := st.tok.Load(); old != nil && now.Before(old.expires) {
			s.log.Warn("oauth token refresh failed; serving the current token until it expires", "credential", cred.Name, "expires_at", old.expires, "err", err)
			held := *old
			held.serveUntil = minTime(old.expires, now.Add(5*time.Second))
			return st, &held, nil
		}
		return nil, nil, err
	}
	st.tok.Store(t)
	return st, t, nil
}

// tokenResponse is RFC 6749 section 5.1. expires_in is taken as a number or
// a numeric string (some providers send strings).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    any    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

var oauthErrRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)

// fetchToken asks the token endpoint for a new access token. For refresh
// tokens, a rotated refresh token in the answer is stored as a new version
// before the token is returned. Callers hold the credential's lock.
func (s *Service) fetchToken(ctx context.Context, cred *Credential, st *tokenState, now time.Time) (*accessToken, error) {
	unavailable := func(format string, args ...any) error {
		return warden.Errorf(warden.CodeCredentialUnavailable, "credential %s: "+format, append([]any{cred.Name}, args...)...)
	}
	tokenURL, _ := cred.Config["token_url"].(string)
	if err := oauthConfig(cred.Config, &s.o); err != nil {
		return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+" has an invalid OAuth config")
	}
	version := cred.Version
	var fields map[string]string
	if p := st.pending; p != nil && p.base == cred.Version {
		fields = p.fields
	} else {
		st.pending = nil
		f, err := s.open(ctx, cred, cred.Version)
		if err != nil {
			return nil, err
		}
		fields = f
	}
	form := url.Values{}
	if cred.Type == TypeOAuth2ClientCredentials {
		form.Set("grant_type", "client_credentials")
	} else {
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", fields["refresh_token"])
	}
	if sc, _ := scopes(cred.Config); len(sc) > 0 {
		form.Set("scope", strings.Join(sc, " "))
	}
	// A confidential client authenticates with HTTP Basic unless told
	// otherwise; a public client (no secret) names itself in the form.
	basic := cred.Config["client_auth"] != "body" && fields["client_secret"] != ""
	if fields["client_id"] != "" && !basic {
		form.Set("client_id", fields["client_id"])
		if fields["client_secret"] != "" {
			form.Set("client_secret", fields["client_secret"])
		}
	}
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(body))
	if err != nil {
		return nil, unavailable("cannot build the token request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if fields["client_id"] != "" && basic {
		// RFC 6749 section 2.3.1: form-encode, then Basic.
		req.SetBasicAuth(url.QueryEscape(fields["client_id"]), url.QueryEscape(fields["client_secret"]))
	}
	client := s.public
	if allowPrivate(cred.Config, &s.o) {
		client = s.private
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already; keep the cause short
		}
		return nil, warden.Wrap(err, warden.CodeCredentialUnavailable, "credential "+cred.Name+": token endpoint unreachable")
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return nil, unavailable("reading the token endpoint's answer failed")
	}
	if len(raw) > maxTokenResponse {
		return nil, unavailable("the token endpoint's answer is larger than %d bytes", maxTokenResponse)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(raw, &tr)
	clear(raw)
	if resp.StatusCode != http.StatusOK {
		code := ""
		if jsonErr == nil && oauthErrRE.MatchString(tr.Error) {
			code = " (" + tr.Error + ")"
		}
		return nil, unavailable("the token endpoint answered HTTP %d%s", resp.StatusCode, code)
	}
	if jsonErr != nil {
		return nil, unavailable("the token endpoint's answer is not a JSON token response")
	}
	if tr.AccessToken == "" || len(tr.AccessToken) > 16<<10 || !headerSafe(tr.AccessToken) {
		return nil, unavailable("the token endpoint's answer has no usable access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, unavailable("the token endpoint issued a %q token; only bearer tokens are supported", shortSafe(tr.TokenType))
	}
	lifetime, err := s.lifetime(tr.ExpiresIn)
	if err != nil {
		return nil, unavailable("%s", err.Error())
	}
	if tr.RefreshToken != "" && cred.Type == TypeOAuth2RefreshToken && tr.RefreshToken != fields["refresh_token"] {
		if !headerSafe(tr.RefreshToken) || len(tr.RefreshToken) > 16<<10 {
			return nil, unavailable("the token endpoint returned an unusable refresh_token")
		}
		next := make(map[string]string, len(fields))
		for k, v := range fields {
			next[k] = v
		}
		next["refresh_token"] = tr.RefreshToken
		version = s.storeRotatedRefresh(ctx, cred, st, next, now)
	}
	margin := min(max(lifetime/5, 5*time.Second), 5*time.Minute)
	if margin >= lifetime {
		margin = lifetime / 2
	}
	expires := now.Add(lifetime)
	return &accessToken{value: warden.NewSecret(tr.AccessToken), version: version, expires: expires,
		refreshAt: expires.Add(-margin), serveUntil: expires.Add(-margin)}, nil
}

// storeRotatedRefresh stores a rotated refresh token as version
// cred.Version+1 and returns the version the access token belongs to. If
// the store fails, the new refresh token is kept in memory (st.pending) for
// the next refresh and the store is retried then; if someone else changed
// the credential meanwhile (an admin's rotation), theirs wins.
func (s *Service) storeRotatedRefresh(ctx context.Context, cred *Credential, st *tokenState, fields map[string]string, now time.Time) int64 {
	next := *cred
	next.Version = cred.Version + 1
	next.UpdatedAt, next.RotatedAt = now.UTC(), now.UTC()
	ct, err := s.seal(cred.ID, next.Version, fields)
	if err == nil {
		rec := warden.NewChange(warden.Principal{}, "credential.refresh_rotated", "credential", cred.ID, map[string]any{"name": cred.Name, "version": next.Version})
		// The provider has invalidated the old refresh token: it is retired
		// at the next sweep rather than kept for a grace period.
		err = s.o.Store.UpdateCredential(ctx, &next, cred.Version,
			&Sealed{CredentialID: cred.ID, Version: next.Version, Ciphertext: ct, CreatedAt: now.UTC(), PreviousRetireAt: now.UTC()}, rec)
	}
	switch {
	case err == nil:
		st.pending = nil
		s.Purge()
		return next.Version
	case warden.IsCode(err, warden.CodeConflict):
		st.pending = nil
		s.log.Warn("credential changed while its refresh token was rotated; the stored version wins", "credential", cred.Name)
		return cred.Version
	default:
		st.pending = &pendingRefresh{base: cred.Version, fields: fields}
		s.log.Error("cannot store a rotated refresh token; keeping it in memory and retrying at the next refresh", "credential", cred.Name, "err", err)
		return cred.Version
	}
}

// lifetime reads expires_in: absent means DefaultTokenLifetime; it must be
// a whole number of seconds between 1 and one year.
func (s *Service) lifetime(v any) (time.Duration, error) {
	var n float64
	switch x := v.(type) {
	case nil:
		return s.o.DefaultTokenLifetime, nil
	case float64:
		n = x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, errors.New("the token endpoint's expires_in is not a number")
		}
		n = f
	default:
		return 0, errors.New("the token endpoint's expires_in is not a number")
	}
	if n < 1 || n > 365*24*3600 {
		return 0, errors.New("the token endpoint's expires_in is out of range")
	}
	return time.Duration(n) * time.Second, nil
}

// headerSafe reports whether v can go into an HTTP header as is: visible
// ASCII only (RFC 6750 b64token is a subset).
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return v != ""
}

// shortSafe trims provider-supplied text for a message.
func shortSafe(v string) string {
	if len(v) > 32 || !headerSafe(v) {
		return "unrecognised"
	}
	return v
}
