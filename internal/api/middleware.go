package api

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden"
	"warden/internal/problem"
)

type ctxKey int

const principalKey ctxKey = 0

// principal returns the authenticated caller (set by wrap).
func principal(r *http.Request) warden.Principal {
	p, _ := r.Context().Value(principalKey).(warden.Principal)
	return p
}

// statusWriter records the status for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap applies, in order: request id, panic recovery, metrics, body limit,
// authentication for the route's class, and error rendering.
func (a *API) wrap(rt route) http.Handler {
	label := rt.Method + " " + rt.Pattern
	if rt.Pattern == "/" {
		label = "unmatched"
	}
	hist := a.metrics.duration.With(prometheus.Labels{"route": label})
	// The route's request counters by status class, made on first use: a
	// lookup by label map on every request allocates and hashes.
	var byClass [10]atomic.Pointer[prometheus.Counter] // status/100; net/http allows 100-999
	count := func(status int) {
		if status == 0 {
			status = 200
		}
		i := min(max(status/100, 0), 9)
		c := byClass[i].Load()
		if c == nil {
			v := a.metrics.requests.With(prometheus.Labels{"route": label, "code": statusClass(status)})
			c = &v
			byClass[i].Store(c)
		}
		(*c).Inc()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := warden.NewID(warden.PrefixRequest)
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-Id", id)
		ctx := problem.WithRequestID(r.Context(), id)
		r = r.WithContext(ctx)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.o.Logger.Error("panic in handler", "request_id", id, "route", label, "panic", v)
				if sw.status == 0 {
					a.writeError(sw, r, warden.Errorf(warden.CodeInternal, "internal error"))
				}
			}
			hist.Observe(time.Since(start).Seconds())
			count(sw.status)
		}()
		if r.Body != nil {
			r.Body = http.MaxBytesReader(sw, r.Body, a.o.MaxBodyBytes)
		}
		if rt.Auth != authNone {
			p, err := a.authenticate(r, rt.Auth)
			if err != nil {
				a.writeError(sw, r, err)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		}
		if err := rt.Handler(sw, r); err != nil {
			a.writeError(sw, r, err)
		}
	})
}

func statusClass(s int) string {
	if s == 0 {
		s = 200
	}
	return string(rune('0'+s/100)) + "xx"
}

// bearer extracts the credential from "Authorization: Bearer <token>".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (a *API) authenticate(r *http.Request, class string) (warden.Principal, error) {
	tok := bearer(r)
	if tok == "" {
		return warden.Principal{}, warden.Errorf(warden.CodeUnauthenticated, "missing bearer token (Authorization: Bearer <token>)")
	}
	p, err := a.o.Authn.Authenticate(r.Context(), tok)
	if err != nil {
		return warden.Principal{}, err
	}
	switch {
	case class == authAdmin && !p.IsAdmin():
		return warden.Principal{}, warden.Errorf(warden.CodeForbidden, "this route needs an admin token; agent credentials cannot call admin routes")
	case class == authAgent && p.Kind != warden.PrincipalIdentity:
		return warden.Principal{}, warden.Errorf(warden.CodeForbidden, "this route is for agents (an identity's API key or access token)")
	}
	return p, nil
}
