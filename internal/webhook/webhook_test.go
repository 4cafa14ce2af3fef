package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"warden"
)

func TestDeliverSignsAndRetries(t *testing.T) {
	var calls atomic.Int32
	secret := warden.NewSecret("s3cret")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Warden-Signature") != Sign(secret, r.Header.Get("X-Warden-Timestamp"), b) || string(b) != `{"a":1}` || r.Header.Get("X-Warden-Event") != "test" {
			w.WriteHeader(400)
			return
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(503)
			return
		}
	}))
	defer srv.Close()
	s := Sender{URL: srv.URL, Secret: secret, Event: "test", Backoff: time.Millisecond}
	if err := s.Deliver(context.Background(), "d1", []byte(`{"a":1}`)); err != nil || calls.Load() != 3 {
		t.Fatalf("deliver: %v after %d calls", err, calls.Load())
	}
	bad := Sender{URL: srv.URL, Secret: warden.NewSecret("wrong"), Attempts: 2, Backoff: time.Millisecond}
	if err := bad.Deliver(context.Background(), "d2", []byte(`{"a":1}`)); err == nil {
		t.Fatal("a refused delivery reported success")
	}
}
