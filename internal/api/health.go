package api

import (
	"context"
	"net/http"
	"time"

	"warden/apitype"
)

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, apitype.Health{Status: "ok"})
}

// readyz is ready when start-up has finished, shutdown has not begun and
// the database answers within a second.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	h := apitype.Health{Status: "ok", Checks: map[string]string{"startup": "ok", "database": "ok"}}
	status := http.StatusOK
	if !a.o.Ready.Load() {
		h.Status, h.Checks["startup"], status = "unavailable", "not ready", http.StatusServiceUnavailable
	}
	if a.o.Database != nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := a.o.Database.Ping(ctx); err != nil {
			h.Status, h.Checks["database"], status = "unavailable", "unreachable", http.StatusServiceUnavailable
		}
	}
	return writeJSON(w, status, h)
}
