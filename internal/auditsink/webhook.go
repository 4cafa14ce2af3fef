package auditsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"warden"
	"warden/internal/audit"
	"warden/internal/webhook"
)

// encoder writes events exactly as audit.Export does (audit.NewEncoder),
// reusing one buffer.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func (e *encoder) encode(format string, ev *audit.Event) ([]byte, error) {
	if e.enc == nil {
		e.enc = audit.NewEncoder(&e.buf)
	}
	e.buf.Reset()
	var v any = ev
	if format == audit.FormatOCSF {
		v = audit.OCSF(ev)
	}
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// webhookSink posts each batch as JSON Lines. Headers:
//
//	Content-Type: application/x-ndjson
//	X-Warden-Event: audit.events
//	X-Warden-Sink: <sink name>
//	X-Warden-First-Seq, X-Warden-Last-Seq: the batch's first and last seq
//	X-Warden-Timestamp, X-Warden-Signature: as internal/webhook (with a secret)
//	Authorization: the configured value (a collector's token), when set
//
// Any 2xx answer means delivered; anything else, a redirect or a timeout is
// a failure, retried by the sink. Redirects are never followed: a receiver
// cannot send the audit trail (or its signature) elsewhere.
type webhookSink struct {
	name   string
	url    string
	host   string // for errors: never the full URL, which may carry a token
	secret warden.Secret
	auth   warden.Secret
	client *http.Client
	body   bytes.Buffer
}

func newWebhook(c Config, roots *x509.CertPool) *webhookSink {
	u, _ := url.Parse(c.URL) // Validate checked it
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 2
	return &webhookSink{
		name: c.Name, url: c.URL, host: u.Scheme + "://" + u.Host, secret: c.Secret, auth: c.Authorization,
		client: &http.Client{
			Transport:     tr,
			Timeout:       c.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (w *webhookSink) send(ctx context.Context, evs []*audit.Event, lines [][]byte) error {
	w.body.Reset()
	for _, l := range lines {
		w.body.Write(l)
	}
	body := w.body.Bytes()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: cannot build the request", w.host)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := req.Header
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("User-Agent", "warden-audit-sink")
	h.Set("X-Warden-Event", "audit.events")
	h.Set("X-Warden-Sink", w.name)
	h.Set("X-Warden-First-Seq", strconv.FormatInt(evs[0].Seq, 10))
	h.Set("X-Warden-Last-Seq", strconv.FormatInt(evs[len(evs)-1].Seq, 10))
	h.Set("X-Warden-Timestamp", ts)
	if !w.secret.IsZero() {
		h.Set("X-Warden-Signature", webhook.Sign(w.secret, ts, body))
	}
	if !w.auth.IsZero() {
		h.Set("Authorization", w.auth.Reveal())
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// url.Error quotes the whole URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook %s: %w", w.host, err)
	}
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: answered %d", w.host, resp.StatusCode)
	}
	return nil
}

func (w *webhookSink) close() { w.client.CloseIdleConnections() }
