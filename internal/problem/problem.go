// Package problem renders errors as RFC 9457 problem+json, in one place for
// every front (the REST API, the proxy, execute), and carries the request id.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"warden"
	"warden/apitype"
)

type ctxKey struct{}

// WithRequestID returns ctx carrying the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// RequestID returns the request id carried by ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Status maps error codes onto HTTP statuses.
func Status(c warden.Code) int {
	switch c {
	case warden.CodeInvalid:
		return http.StatusBadRequest
	case warden.CodeNotFound:
		return http.StatusNotFound
	case warden.CodeConflict:
		return http.StatusConflict
	case warden.CodeUnauthenticated:
		return http.StatusUnauthorized
	case warden.CodeForbidden, warden.CodeIdentitySuspended, warden.CodeIdentityDecommissioned, warden.CodeUnknownIdentity,
		warden.CodeUnknownOperation, warden.CodeNoCredential, "denied", "no_matching_policy", "policy_error",
		warden.CodeApprovalInvalid, warden.CodeApprovalRequired:
		return http.StatusForbidden
	case warden.CodeRateLimited, warden.CodeApprovalQuota:
		return http.StatusTooManyRequests
	case warden.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case warden.CodeUnavailable, warden.CodeCredentialUnavailable, warden.CodeAuditUnavailable:
		return http.StatusServiceUnavailable
	case warden.CodeUpstreamUnavailable:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// Extra adds decision details to a problem (gateway denials).
type Extra struct {
	Policy     string
	Rule       string
	RetryAfter int64
	Decision   string // Warden-Decision header value; "" = error
}

// Write renders err. Internal errors are logged with the request id and
// shown only as "internal error": no SQL, no stack, no secret reaches the
// client. Unavailable errors are logged as warnings.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, extra *Extra) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = warden.Errorf(warden.CodeTooLarge, "request body larger than %d bytes", mbe.Limit)
	}
	var we *warden.Error
	if !errors.As(err, &we) {
		we = &warden.Error{Code: warden.CodeInternal, Err: err}
	}
	status := Status(we.Code)
	p := apitype.Problem{
		Type:      "urn:warden:problem:" + string(we.Code),
		Title:     http.StatusText(status),
		Status:    status,
		Code:      string(we.Code),
		Field:     we.Field,
		Detail:    we.Message,
		RequestID: RequestID(r.Context()),
	}
	switch status {
	case http.StatusInternalServerError:
		log.Error("internal error", "request_id", p.RequestID, "method", r.Method, "path", r.URL.Path, "err", err)
		p.Detail, p.Field = "internal error (request id "+p.RequestID+")", ""
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		log.Warn("unavailable", "request_id", p.RequestID, "path", r.URL.Path, "code", p.Code, "err", err)
	}
	h := w.Header()
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="warden"`)
	}
	if extra != nil {
		p.Policy, p.Rule = extra.Policy, extra.Rule
		if extra.RetryAfter > 0 {
			p.RetryAfter = extra.RetryAfter
			h.Set("Retry-After", itoa(extra.RetryAfter))
		}
		d := extra.Decision
		if d == "" {
			d = "error"
		}
		h.Set("Warden-Decision", d)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
