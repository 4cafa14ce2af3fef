package auditsink_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"warden/internal/wardentest"
)

// BenchmarkWebhookDelivery measures how fast one webhook sink drains a
// backlog to a local receiver: read from SQLite, encode as JSON Lines,
// sign, POST, advance the cursor. Each iteration is a new sink delivering
// the whole chain from seq 1.
func BenchmarkWebhookDelivery(b *testing.B) {
	const events = 20000
	st := wardentest.SQLite(b)
	e := newEnv(b, st)
	head := e.appendN(b, events, nil)
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received.Add(int64(bytes.Count(body, []byte{'\n'})))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	for i := 0; b.Loop(); i++ {
		name := "bench-" + strconv.Itoa(i)
		cfg := webhookSink(name, srv.URL)
		cfg.Secret = secret("bench-secret")
		r := start(b, st, cfg)
		waitFor(b, "the backlog delivered", func() bool { c, _ := st.AuditSinkCursor(ctx, name); return c == head })
		r.stop()
	}
	b.ReportMetric(float64(received.Load())/time.Since(began).Seconds(), "events/s")
}
