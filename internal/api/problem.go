package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"warden"
	"warden/internal/problem"
)

// writeError renders err as problem+json (see internal/problem).
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	problem.Write(w, r, a.o.Logger, err, nil)
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
