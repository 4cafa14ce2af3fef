package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"warden"
	"warden/internal/webhook"
)

// WebhookOptions configure the approval webhook.
type WebhookOptions struct {
	URL    string
	Secret warden.Secret // HMAC key for the X-Warden-Signature header
	// PublicURL is Warden's address as humans reach it, for links back.
	PublicURL string
	Logger    *slog.Logger
	// Attempts per notification (default 6), with exponential backoff
	// starting at Backoff (default 1s).
	Attempts int
	Backoff  time.Duration
	Client   *http.Client
}

// Webhook posts a Slack-compatible message for every new approval request,
// signed so the receiver can check it came from Warden:
//
//	X-Warden-Timestamp: <unix seconds>
//	X-Warden-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// Delivery runs in the background with retries; a receiver that is down
// never blocks or fails an approval (approvals work without notifications).
type Webhook struct {
	o     WebhookOptions
	queue chan *Approval
}

// NewWebhook returns a webhook notifier; call Run to deliver.
func NewWebhook(o WebhookOptions) *Webhook {
	if o.Attempts == 0 {
		o.Attempts = 6
	}
	if o.Backoff == 0 {
		o.Backoff = time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Webhook{o: o, queue: make(chan *Approval, 1024)}
}

// Notify queues a notification; when the queue is full the request is
// logged and not notified (the approval itself is unaffected).
func (w *Webhook) Notify(a *Approval) {
	select {
	case w.queue <- a:
	default:
		w.o.Logger.Warn("approval webhook queue full; notification dropped", "approval", a.ID)
	}
}

// Run delivers queued notifications until ctx ends.
func (w *Webhook) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.queue:
			w.deliver(ctx, a)
		}
	}
}

// Payload is the JSON body: Slack's `text` and `blocks`, and the approval
// itself under `warden` for other receivers.
type Payload struct {
	Text   string           `json:"text"`
	Blocks []map[string]any `json:"blocks"`
	Warden map[string]any   `json:"warden"`
}

func (w *Webhook) payload(a *Approval) Payload {
	link := w.o.PublicURL + "/v1/approvals/" + a.ID
	text := fmt.Sprintf("Approval needed: %s wants to run %s (%s %s). Policy %s/%s: %s. Expires %s. %s",
		a.IdentityName, a.Action, a.Method, a.Path, a.Policy, a.Rule, a.Reason, a.ExpiresAt.Format(time.RFC3339), link)
	return Payload{
		Text: text,
		Blocks: []map[string]any{
			{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("*Approval needed*\n*%s* wants to run `%s`\n%s %s", a.IdentityName, a.Action, a.Method, a.Path)}},
			{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("Policy %s/%s: %s · owner %s · expires %s · id %s", a.Policy, a.Rule, a.Reason, a.Owner, a.ExpiresAt.Format(time.RFC3339), a.ID)}}},
		},
		Warden: map[string]any{
			"approval_id": a.ID, "identity": a.IdentityID, "identity_name": a.IdentityName, "owner": a.Owner,
			"action": a.Action, "method": a.Method, "path": a.Path, "resource": a.Resource, "policy": a.Policy,
			"rule": a.Rule, "reason": a.Reason, "expires_at": a.ExpiresAt, "url": link,
			"approve": "POST " + link + "/approve", "deny": "POST " + link + "/deny",
		},
	}
}

// Sign returns the signature header value for body at timestamp ts (see
// internal/webhook).
func Sign(secret warden.Secret, ts string, body []byte) string { return webhook.Sign(secret, ts, body) }

func (w *Webhook) deliver(ctx context.Context, a *Approval) {
	body, err := json.Marshal(w.payload(a))
	if err != nil {
		w.o.Logger.Error("approval webhook: encoding", "approval", a.ID, "err", err)
		return
	}
	s := webhook.Sender{URL: w.o.URL, Secret: w.o.Secret, UserAgent: "warden-approvals", Event: "approval",
		Attempts: w.o.Attempts, Backoff: w.o.Backoff, Client: w.o.Client, Logger: w.o.Logger}
	_ = s.Deliver(ctx, a.ID, body)
}
