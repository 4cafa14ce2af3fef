package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"warden"
	signed "warden/internal/webhook"
)

// WebhookOptions configure the alert webhook.
type WebhookOptions struct {
	URL string
	// Secret signs each delivery exactly like approval webhooks do:
	//   X-Warden-Timestamp: <unix seconds>
	//   X-Warden-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
	Secret warden.Secret
	// PublicURL is Warden's address as humans reach it, for links.
	PublicURL string
	// MinSeverity: findings below it are not sent (default low).
	MinSeverity Severity
	Logger      *slog.Logger
	// Attempts per alert (default 6) with exponential backoff from Backoff
	// (default 1s, at most 30s between attempts).
	Attempts int
	Backoff  time.Duration
	Client   *http.Client
}

// webhook delivers alerts in the background; a receiver that is down never
// slows detection or the breaker. De-duplication happens before (the
// detectors' cooldown), so every alert here is a distinct finding.
type webhook struct {
	o     WebhookOptions
	queue chan *Finding
	idle  chan chan struct{}
}

func newWebhook(o WebhookOptions) *webhook {
	if o.Attempts == 0 {
		o.Attempts = 6
	}
	if o.Backoff == 0 {
		o.Backoff = time.Second
	}
	if o.MinSeverity == "" {
		o.MinSeverity = Low
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &webhook{o: o, queue: make(chan *Finding, 1024), idle: make(chan chan struct{})}
}

// notify queues an alert; a full queue drops it with a log line (the
// finding itself is stored and audited regardless).
func (w *webhook) notify(f *Finding) {
	if f.Severity.Rank() < w.o.MinSeverity.Rank() {
		return
	}
	c := *f
	select {
	case w.queue <- &c:
	default:
		w.o.Logger.Warn("monitor webhook queue full; alert dropped", "finding", f.ID)
	}
}

func (w *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.queue:
			w.deliver(ctx, f)
		case ch := <-w.idle:
			// Only reached when the queue is empty (select picks at random,
			// so drain first).
			for len(w.queue) > 0 {
				w.deliver(ctx, <-w.queue)
			}
			close(ch)
		}
	}
}

// flushQueued waits until everything queued so far was attempted.
func (w *webhook) flushQueued() {
	ch := make(chan struct{})
	select {
	case w.idle <- ch:
		<-ch
	case <-time.After(time.Minute):
	}
}

// drain waits up to d for queued alerts to be delivered.
func (w *webhook) drain(d time.Duration) {
	ch := make(chan struct{})
	select {
	case w.idle <- ch:
	case <-time.After(d):
		return
	}
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// Alert is the JSON body: Slack's text and blocks, and the finding under
// "warden" for other receivers.
type Alert struct {
	Text   string           `json:"text"`
	Blocks []map[string]any `json:"blocks"`
	Warden map[string]any   `json:"warden"`
}

func (w *webhook) payload(f *Finding) Alert {
	link := w.o.PublicURL + "/v1/findings/" + f.ID
	who := f.IdentityName
	if who == "" {
		who = f.IdentityID
	}
	if who == "" {
		who = "Warden"
	}
	text := fmt.Sprintf("[%s] %s: %s (action taken: %s) %s", f.Severity, f.Detector, f.Explanation, f.ActionTaken, link)
	return Alert{
		Text: text,
		Blocks: []map[string]any{
			{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("*%s finding: %s* on *%s*\n%s", f.Severity, f.Detector, who, f.Explanation)}},
			{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("Action taken: %s · owner %s · id %s", f.ActionTaken, f.Owner, f.ID)}}},
		},
		Warden: map[string]any{
			"finding_id": f.ID, "identity": f.IdentityID, "identity_name": f.IdentityName, "owner": f.Owner, "detector": f.Detector,
			"severity": f.Severity, "explanation": f.Explanation, "action": f.Action, "action_taken": f.ActionTaken, "time": f.DetectedAt,
			"first_event_at": f.FirstEventAt, "evidence": f.Evidence, "url": link,
			"acknowledge": "POST " + link + "/ack", "resolve": "POST " + link + "/resolve",
		},
	}
}

func (w *webhook) deliver(ctx context.Context, f *Finding) {
	body, err := json.Marshal(w.payload(f))
	if err != nil {
		w.o.Logger.Error("monitor webhook: encoding", "finding", f.ID, "err", err)
		return
	}
	s := signed.Sender{URL: w.o.URL, Secret: w.o.Secret, UserAgent: "warden-monitor", Event: "finding",
		Attempts: w.o.Attempts, Backoff: w.o.Backoff, Client: w.o.Client, Logger: w.o.Logger}
	_ = s.Deliver(ctx, f.ID, body)
}
