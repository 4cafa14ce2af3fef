package server

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"warden/internal/audit"
	"warden/internal/gate"
)

// gateAuditor turns the gate's records into audit events. Append returns
// only once the event is durable; its error makes the gate fail closed.
type gateAuditor struct{ log *audit.Log }

func (g gateAuditor) Record(ctx context.Context, r gate.Record) (int64, error) {
	rc, err := g.log.Append(ctx, event(r))
	return rc.Seq, err
}

// Enqueue queues a completed record for the next group commit.
func (g gateAuditor) Enqueue(ctx context.Context, r gate.Record) error {
	return g.log.Enqueue(ctx, event(r))
}

func event(r gate.Record) audit.Event {
	e := audit.Event{
		Time: r.Time, Kind: r.Kind, Actor: r.Actor, Identity: r.IdentityID, Action: r.Action,
		Resource: resourceString(r.Resource), Decision: r.Decision, Code: r.Code, Policy: r.Policy, Rule: r.Rule,
		Reason: r.Reason, ApprovalID: r.ApprovalID, CredentialID: r.CredentialID, TraceID: r.RequestID,
		Request: audit.Request{Method: r.Method, Path: r.Path, ClientIP: r.ClientIP, UserAgent: r.UserAgent, Bytes: r.BytesIn, ResponseBytes: r.BytesOut},
		Outcome: audit.Outcome{Status: r.Status, Latency: r.Latency},
	}
	if r.DecidedSeq != 0 || len(r.Detail) > 0 {
		d := make(map[string]any, len(r.Detail)+1)
		for k, v := range r.Detail {
			d[k] = v
		}
		if r.DecidedSeq != 0 {
			d["decided_seq"] = r.DecidedSeq
		}
		e.Detail, _ = json.Marshal(d)
	}
	return e
}

// resourceString renders path parameters as "k=v,k=v", sorted, for the
// event's resource field.
func resourceString(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		writeValue(&b, m[k])
	}
	return b.String()
}

// writeValue writes a resource value: a string as it is, anything else as
// JSON. The common scalar types skip json.Marshal (an allocation or more per
// value on every governed call); they render the same bytes it would.
func writeValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case string:
		b.WriteString(x)
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	default:
		j, _ := json.Marshal(v)
		b.Write(j)
	}
}
