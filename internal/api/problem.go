package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"warden"
	"warden/apitype"
)

// httpStatus maps error codes onto HTTP statuses, in one place.
func httpStatus(c warden.Code) int {
	switch c {
	case warden.CodeInvalid:
		return http.StatusBadRequest
	case warden.CodeNotFound:
		return http.StatusNotFound
	case warden.CodeConflict:
		return http.StatusConflict
	case warden.CodeUnauthenticated:
		return http.StatusUnauthorized
	case warden.CodeForbidden, warden.CodeIdentitySuspended, warden.CodeIdentityDecommissioned, warden.CodeUnknownIdentity:
		return http.StatusForbidden
	case warden.CodeRateLimited:
		return http.StatusTooManyRequests
	case warden.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case warden.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError renders err as problem+json. Internal errors are logged with
// the request id and shown only as "internal error": no SQL, no stack, no
// secret reaches the client.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = warden.Errorf(warden.CodeTooLarge, "request body larger than %d bytes", mbe.Limit)
	}
	var we *warden.Error
	if !errors.As(err, &we) {
		we = &warden.Error{Code: warden.CodeInternal, Err: err}
	}
	status := httpStatus(we.Code)
	p := apitype.Problem{
		Type:      "urn:warden:problem:" + string(we.Code),
		Title:     http.StatusText(status),
		Status:    status,
		Code:      string(we.Code),
		Field:     we.Field,
		Detail:    we.Message,
		RequestID: requestID(r),
	}
	switch {
	case we.Code == warden.CodeInternal:
		a.o.Logger.Error("internal error", "request_id", p.RequestID, "method", r.Method, "path", r.URL.Path, "err", err)
		p.Detail, p.Field = "internal error (request id "+p.RequestID+")", ""
	case we.Code == warden.CodeUnavailable:
		a.o.Logger.Warn("unavailable", "request_id", p.RequestID, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warden"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON writes v with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads exactly one JSON object into v, refusing unknown fields,
// trailing data and non-JSON content types. An empty body is allowed when
// optional is true (v keeps its zero value).
func decode(r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return warden.Errorf(warden.CodeInvalid, "Content-Type must be application/json")
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && optional {
			return nil
		}
		return bodyError(err)
	}
	if dec.More() {
		return warden.Errorf(warden.CodeInvalid, "request body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return warden.Errorf(warden.CodeInvalid, "request body must hold exactly one JSON object")
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return warden.Errorf(warden.CodeTooLarge, "request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return warden.Errorf(warden.CodeInvalid, "request body is empty; a JSON object is required")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return warden.Errorf(warden.CodeInvalid, "request body is not valid JSON")
	case errors.As(err, &te):
		return &warden.Error{Code: warden.CodeInvalid, Field: te.Field, Message: "must be a " + jsonKind(te.Type.Kind().String())}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &warden.Error{Code: warden.CodeInvalid, Field: f, Message: "unknown field"}
	}
	return warden.Errorf(warden.CodeInvalid, "invalid request body: %s", safeMsg(err.Error()))
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "number"
}

// safeMsg bounds an error message echoed to a client.
func safeMsg(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
