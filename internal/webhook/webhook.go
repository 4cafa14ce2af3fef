// Package webhook delivers signed JSON notifications with retries, for
// every part of Warden that tells humans or other systems about something
// (approval requests, monitoring alerts). A receiver checks a delivery with
// the shared secret:
//
//	X-Warden-Timestamp: <unix seconds>
//	X-Warden-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"warden"
)

// Sign returns the X-Warden-Signature value for body sent at timestamp ts.
func Sign(secret warden.Secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Sender posts to one URL. Zero fields take defaults: 6 attempts, backoff
// from 1s doubling to at most 30s, a 10s client that never follows
// redirects.
type Sender struct {
	URL       string
	Secret    warden.Secret
	UserAgent string // e.g. warden-approvals
	Event     string // X-Warden-Event, when set
	Attempts  int
	Backoff   time.Duration
	Client    *http.Client
	Logger    *slog.Logger
}

var noRedirects = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Deliver posts body, retrying failures (network errors and non-2xx
// answers) with exponential backoff until it succeeds, the attempts run out
// or ctx ends. id names the delivery in logs.
func (s *Sender) Deliver(ctx context.Context, id string, body []byte) error {
	attempts, backoff, client, log := s.Attempts, s.Backoff, s.Client, s.Logger
	if attempts == 0 {
		attempts = 6
	}
	if backoff == 0 {
		backoff = time.Second
	}
	if client == nil {
		client = noRedirects
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, err := http.NewRequestWithContext(ctx, "POST", s.URL, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("webhook: bad URL: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		if s.UserAgent != "" {
			req.Header.Set("User-Agent", s.UserAgent)
		}
		req.Header.Set("X-Warden-Timestamp", ts)
		if s.Event != "" {
			req.Header.Set("X-Warden-Event", s.Event)
		}
		if !s.Secret.IsZero() {
			req.Header.Set("X-Warden-Signature", Sign(s.Secret, ts, body))
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if attempt == attempts {
			break
		}
		log.Warn("webhook delivery failed; retrying", "delivery", id, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	log.Error("webhook: giving up", "delivery", id, "attempts", attempts, "err", last)
	return last
}
