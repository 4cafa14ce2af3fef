// Package audit is Warden's tamper-evident audit log: one event model for
// every kind (operations decided and completed, admin changes, credential
// use, lifecycle, anomaly findings), a SHA-256 hash chain over a versioned
// canonical encoding, group commit so an event is durable before Append
// returns, signed checkpoints kept in the database and in a file outside it,
// and Verify, which pinpoints the first broken sequence number and says what
// is wrong. docs/audit.md describes the formats and the guarantees.
//
// Contracts callers rely on:
//
//   - Append returns only once the event is committed (SQLite synchronous=FULL,
//     PostgreSQL synchronous_commit=on). If it cannot be, it returns an error
//     with code warden.CodeUnavailable that matches ErrUnavailable; the caller
//     must then refuse the operation (fail closed).
//   - Sequence numbers are gapless from 1 per database, also across replicas.
//   - Admin changes recorded in the changes table are adopted into the chain
//     exactly once, even across crashes.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"warden"
)

// Event kinds. Kind is free-form (a lowercase dotted name) so later packages
// can add kinds; these are the ones Warden writes.
const (
	// KindDecided is written by the gateway before it forwards anything.
	KindDecided = "operation.decided"
	// KindCompleted is written once the upstream answered.
	KindCompleted = "operation.completed"
	// KindAdminChange is an admin change adopted from the changes table.
	KindAdminChange = "admin.change"
	// KindCredentialUse records a credential injected or leased.
	KindCredentialUse = "credential.use"
	// KindLifecycle records suspend/resume, circuit breaker trips and the like.
	KindLifecycle = "lifecycle"
	// KindFinding records an anomaly finding.
	KindFinding = "anomaly.finding"
)

// Kinds returns the event kinds Warden writes (the Kind constants above),
// e.g. what an audit sink's kinds filter may select.
func Kinds() []string {
	return []string{KindDecided, KindCompleted, KindAdminChange, KindCredentialUse, KindLifecycle, KindFinding}
}

// Version1 is the canonical encoding every event written today uses. The
// encoding of a version never changes; a new layout gets a new version and
// Verify keeps checking old rows with the encoding they were written with.
const Version1 = 1

// Field bounds. Longer strings are cut at a rune boundary (and marked with
// "…") before hashing, so what is stored is exactly what was hashed.
const (
	maxField  = 4096
	maxDetail = 64 << 10
)

// Hash is a SHA-256 digest; its text form is lowercase hex.
type Hash [32]byte

// String returns the hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses the hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return errors.New("hash must be 64 hex characters")
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// IsZero reports whether h is all zeroes (the prev_hash of seq 1).
func (h Hash) IsZero() bool { return h == Hash{} }

// Request describes the HTTP (or other front's) request behind an event.
type Request struct {
	Method        string `json:"method,omitempty"`
	Path          string `json:"path,omitempty"`
	ClientIP      string `json:"client_ip,omitempty"`
	UserAgent     string `json:"user_agent,omitempty"`
	Bytes         int64  `json:"bytes,omitempty"`          // request body size
	ResponseBytes int64  `json:"response_bytes,omitempty"` // response body size
}

// Outcome is what the upstream (or Warden) answered.
type Outcome struct {
	Status  int           `json:"status,omitempty"`
	Latency time.Duration `json:"-"` // stored in microseconds
}

type outcomeJSON struct {
	Status    int   `json:"status,omitempty"`
	LatencyUS int64 `json:"latency_us,omitempty"`
}

// MarshalJSON writes the latency in microseconds.
func (o Outcome) MarshalJSON() ([]byte, error) {
	return json.Marshal(outcomeJSON{Status: o.Status, LatencyUS: o.Latency.Microseconds()})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (o *Outcome) UnmarshalJSON(b []byte) error {
	var v outcomeJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	o.Status, o.Latency = v.Status, time.Duration(v.LatencyUS)*time.Microsecond
	return nil
}

// Event is one audit event. Callers of Append fill the descriptive fields;
// Append assigns Seq, V, PrevHash and Hash (and ID and Time when empty).
// Never put a secret in an event: use (*Log).MAC for sensitive values.
type Event struct {
	Seq  int64     `json:"seq"`
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Actor is who acted: "identity:nhi_...", "admin:adm_...(alice)",
	// "system".
	Actor      string   `json:"actor"`
	ActorRoles []string `json:"actor_roles,omitempty"`
	// Identity is the identity acted as or acted upon (its id).
	Identity     string  `json:"identity"`
	Action       string  `json:"action"`
	Resource     string  `json:"resource"`
	Decision     string  `json:"decision"`
	Code         string  `json:"code"`
	Policy       string  `json:"policy"`
	Rule         string  `json:"rule"`
	Reason       string  `json:"reason"`
	ApprovalID   string  `json:"approval_id,omitempty"`
	CredentialID string  `json:"credential_id,omitempty"`
	TraceID      string  `json:"trace_id,omitempty"`
	Request      Request `json:"request"`
	Outcome      Outcome `json:"outcome"`
	// Detail is a JSON object with kind-specific data (for admin changes,
	// the change's detail). It is stored and hashed as given, compacted.
	Detail json.RawMessage `json:"detail,omitempty"`

	V        int  `json:"v"`
	PrevHash Hash `json:"prev_hash"`
	Hash     Hash `json:"hash"`
}

// Receipt acknowledges a durable event.
type Receipt struct {
	Seq  int64 `json:"seq"`
	Hash Hash  `json:"hash"`
}

// Head is the newest event of the chain (Seq 0 for an empty chain).
type Head = Receipt

// normalize makes e storable on both engines and bounded: every string is
// valid UTF-8 without NUL (PostgreSQL TEXT refuses both), at most maxField
// bytes; Detail is a compact JSON object. It runs before hashing, so the
// stored row is exactly what was hashed.
func normalize(e *Event, now time.Time) error {
	if e.Kind == "" || len(e.Kind) > 64 || !validKind(e.Kind) {
		return warden.FieldError("kind", "must be a lowercase dotted name like operation.decided")
	}
	if e.ID == "" {
		e.ID = warden.NewID(warden.PrefixEvent)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	for _, p := range []*string{&e.ID, &e.Actor, &e.Identity, &e.Action, &e.Resource, &e.Decision, &e.Code,
		&e.Policy, &e.Rule, &e.Reason, &e.ApprovalID, &e.CredentialID, &e.TraceID,
		&e.Request.Method, &e.Request.Path, &e.Request.ClientIP, &e.Request.UserAgent} {
		*p = clean(*p, maxField)
	}
	for i, r := range e.ActorRoles {
		e.ActorRoles[i] = strings.ReplaceAll(clean(r, 64), ",", "_")
	}
	e.Outcome.Latency = e.Outcome.Latency.Truncate(time.Microsecond)
	if len(e.Detail) > 0 {
		if len(e.Detail) > maxDetail {
			return warden.FieldError("detail", "larger than %d bytes", maxDetail)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, e.Detail); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
			return warden.FieldError("detail", "must be a JSON object")
		}
		if bytes.IndexByte(buf.Bytes(), 0) >= 0 || !utf8.Valid(buf.Bytes()) {
			return warden.FieldError("detail", "must be valid UTF-8 without NUL")
		}
		e.Detail = buf.Bytes()
	}
	return nil
}

func validKind(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return false
		}
	}
	return k[0] != '.' && k[len(k)-1] != '.'
}

// clean makes s valid UTF-8 without NUL and at most max bytes.
func clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) > max {
		cut := max - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// canonicalPrefix starts every version-1 encoding, so a v1 hash can never
// equal the hash of another version's (or another structure's) bytes.
const canonicalPrefix = "warden.audit/v1\n"

// AppendCanonical appends the version-1 canonical encoding of e to buf:
//
//	"warden.audit/v1\n"
//	seq (uint64 big-endian) || prev_hash (32 bytes) || time (int64 big-endian, µs since the epoch, UTC)
//	then 19 strings, each as uint32 big-endian length || UTF-8 bytes, in this order:
//	  id, kind, actor, actor_roles (joined with ","), identity, action, resource,
//	  decision, code, policy, rule, reason, approval_id, credential_id, trace_id,
//	  request.method, request.path, request.client_ip, request.user_agent
//	then 4 int64 big-endian: request.bytes, request.response_bytes, outcome.status, outcome.latency_us
//	then detail as uint32 big-endian length || bytes (compact JSON, or empty)
//
// The hash of the event is SHA-256 of this encoding. Every field is length
// prefixed, so no two different events share an encoding. This layout never
// changes; a new one would be Version2 with its own prefix.
func AppendCanonical(buf []byte, e *Event) []byte {
	buf = append(buf, canonicalPrefix...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.Seq))
	buf = append(buf, e.PrevHash[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(micros(e.Time)))
	buf = appendString(buf, e.ID)
	buf = appendString(buf, e.Kind)
	buf = appendString(buf, e.Actor)
	buf = appendRoles(buf, e.ActorRoles)
	for _, s := range [...]string{e.Identity, e.Action, e.Resource,
		e.Decision, e.Code, e.Policy, e.Rule, e.Reason, e.ApprovalID, e.CredentialID, e.TraceID,
		e.Request.Method, e.Request.Path, e.Request.ClientIP, e.Request.UserAgent} {
		buf = appendString(buf, s)
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.Request.Bytes))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.Request.ResponseBytes))
	buf = binary.BigEndian.AppendUint64(buf, uint64(int64(e.Outcome.Status)))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.Outcome.Latency.Microseconds()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Detail)))
	buf = append(buf, e.Detail...)
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

// appendRoles writes JoinRoles(roles) as one length-prefixed string
// without building it.
func appendRoles(buf []byte, roles []string) []byte {
	n := 0
	for i, r := range roles {
		if i > 0 {
			n++
		}
		n += len(r)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	for i, r := range roles {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r...)
	}
	return buf
}

// JoinRoles is the stored (and hashed) form of actor roles.
func JoinRoles(roles []string) string { return strings.Join(roles, ",") }

// SplitRoles reverses JoinRoles.
func SplitRoles(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// ComputeHash returns the hash of e under its version's canonical encoding,
// using buf as scratch space (it may be nil). ok is false for a version this
// build does not know.
func ComputeHash(buf []byte, e *Event) (h Hash, scratch []byte, ok bool) {
	switch e.V {
	case Version1:
		buf = AppendCanonical(buf[:0], e)
		return sha256.Sum256(buf), buf, true
	}
	return Hash{}, buf, false
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}
