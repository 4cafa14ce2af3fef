package monitor

import (
	"context"
	"strings"
	"time"

	"warden"
)

// Severity ranks a finding. The order is info < low < medium < high <
// critical; responses are configured per severity.
type Severity string

// Severities, lowest first.
const (
	Info     Severity = "info"
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// Severities lists every severity, lowest first.
var Severities = []Severity{Info, Low, Medium, High, Critical}

// Rank orders severities (info 1 ... critical 5; 0 for an unknown one).
func (s Severity) Rank() int {
	for i, v := range Severities {
		if v == s {
			return i + 1
		}
	}
	return 0
}

// ParseSeverity checks s.
func ParseSeverity(s string) (Severity, bool) {
	v := Severity(s)
	return v, v.Rank() > 0
}

func (s Severity) raise(n int) Severity {
	r := min(max(s.Rank()+n, 1), len(Severities))
	return Severities[r-1]
}

// Finding statuses. Nothing is ever deleted: a finding moves from open to
// acknowledged (a human is on it) to resolved, and keeps who did what.
const (
	StatusOpen         = "open"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Detector names (stable: filters, metrics and docs use them).
const (
	DetRateSpike     = "rate_spike"
	DetNewOperation  = "new_operation"
	DetOffHours      = "off_hours"
	DetDenialBurst   = "denial_burst"
	DetProbing       = "probing"
	DetNewNetwork    = "new_network"
	DetNewClient     = "new_client"
	DetKeyReuse      = "key_reuse"
	DetInteractive   = "interactive_use"
	DetApprovalFlood = "approval_flood"
	DetLargeResponse = "large_response"
	DetQueueOverflow = "queue_overflow"
	DetManualTrip    = "manual_trip"
)

// Detectors lists every detector name.
var Detectors = []string{DetRateSpike, DetNewOperation, DetOffHours, DetDenialBurst, DetProbing, DetNewNetwork,
	DetNewClient, DetKeyReuse, DetInteractive, DetApprovalFlood, DetLargeResponse, DetQueueOverflow, DetManualTrip}

// Finding is one thing the monitor noticed, with what it did about it.
type Finding struct {
	ID           string
	IdentityID   string // empty for findings about Warden itself (queue_overflow)
	IdentityName string
	Owner        string // the identity's owner when found (owners see their own findings)
	KeyID        string
	Detector     string
	Severity     Severity
	// Explanation says, for a person, what happened and why it is unusual.
	Explanation string
	// Action is the operation involved, when there is one.
	Action   string
	Evidence map[string]any
	// FirstEventAt is the time of the first anomalous observation;
	// DetectedAt - FirstEventAt is the time to detect.
	FirstEventAt time.Time
	DetectedAt   time.Time
	// ActionTaken is what the breaker did: alert, throttle or suspend (with
	// a note when it could not, e.g. "suspend failed; throttled").
	ActionTaken string
	// ContainedAt is when the throttle or suspension took effect;
	// ContainedAt - DetectedAt is the time to contain.
	ContainedAt *time.Time
	Status      string
	AckedBy     string
	AckedAt     *time.Time
	ResolvedBy  string
	ResolvedAt  *time.Time
	Note        string

	// subject narrows de-duplication (the operation, network, key...).
	subject string
	// raisedAt is the observation time that raised it (scenario tests).
	raisedAt time.Time
}

// Filter selects findings for List. Empty fields do not filter.
type Filter struct {
	IdentityID string
	Owner      string
	Severity   []Severity
	Status     string
	Detector   string
	Limit      int    // 1..1000, default 100
	Cursor     string // opaque; from the previous page
}

// Snapshot is one identity's persisted baseline.
type Snapshot struct {
	IdentityID string
	Data       []byte // JSON; its "v" field is the format version
	UpdatedAt  time.Time
}

// Store is the data access the monitor needs. ListFindings returns newest
// first and a cursor for the next page ("" at the end). UpdateFinding is a
// compare-and-set on the status: it fails with CodeConflict when the stored
// status is not from, and CodeNotFound when there is no such finding.
// SaveBaselines upserts every snapshot in one transaction.
type Store interface {
	CreateFinding(ctx context.Context, f *Finding) error
	GetFinding(ctx context.Context, id string) (*Finding, error)
	ListFindings(ctx context.Context, f Filter) ([]*Finding, string, error)
	UpdateFinding(ctx context.Context, f *Finding, from string) error
	SaveBaselines(ctx context.Context, snaps []Snapshot) error
	LoadBaselines(ctx context.Context) ([]Snapshot, error)
}

// canSeeAll reports whether p sees every identity's findings.
func canSeeAll(p warden.Principal) bool {
	return p.HasRole(warden.RoleSecurity, warden.RoleAuditor, warden.RoleApprover)
}

// canHandle reports whether p may acknowledge or resolve f: the security
// role, or the owner of the identity it is about.
func canHandle(p warden.Principal, f *Finding) bool {
	if p.HasRole(warden.RoleSecurity) {
		return true
	}
	return p.HasRole(warden.RoleOwner) && f.Owner != "" && f.Owner == p.Subject
}

// List returns a page of findings p may see: security, auditor and
// approver roles see all, owners the findings about their identities.
func (m *Monitor) List(ctx context.Context, p warden.Principal, f Filter) ([]*Finding, string, error) {
	switch {
	case canSeeAll(p):
	case p.HasRole(warden.RoleOwner):
		f.Owner = p.Subject
	default:
		return nil, "", warden.Errorf(warden.CodeForbidden, "listing findings needs the security, auditor, approver or owner role")
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, "", warden.FieldError("limit", "must be between 1 and 1000")
	}
	for _, s := range f.Severity {
		if s.Rank() == 0 {
			return nil, "", warden.FieldError("severity", "must be info, low, medium, high or critical (or a comma-separated list of them)")
		}
	}
	switch f.Status {
	case "", StatusOpen, StatusAcknowledged, StatusResolved:
	default:
		return nil, "", warden.FieldError("status", "must be open, acknowledged or resolved")
	}
	if f.Detector != "" && !validDetector(f.Detector) {
		return nil, "", warden.FieldError("detector", "must be one of %s", strings.Join(Detectors, ", "))
	}
	if len(f.Cursor) > 200 {
		return nil, "", warden.FieldError("cursor", "is not a cursor this server issued")
	}
	return m.o.Store.ListFindings(ctx, f)
}

func validDetector(d string) bool {
	for _, v := range Detectors {
		if v == d {
			return true
		}
	}
	return false
}

// Get returns one finding p may see; one it may not is reported as not
// found, so its existence does not leak.
func (m *Monitor) Get(ctx context.Context, p warden.Principal, id string) (*Finding, error) {
	if !warden.HasPrefix(id, warden.PrefixFinding) || len(id) > 64 {
		return nil, warden.Errorf(warden.CodeNotFound, "finding %q not found", clip(id, 64))
	}
	f, err := m.o.Store.GetFinding(ctx, id)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "finding %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	if !canSeeAll(p) && !(p.HasRole(warden.RoleOwner) && f.Owner != "" && f.Owner == p.Subject) {
		return nil, warden.Errorf(warden.CodeNotFound, "finding %q not found", id)
	}
	return f, nil
}

// Acknowledge marks an open finding as being handled by p.
func (m *Monitor) Acknowledge(ctx context.Context, p warden.Principal, id, note string) (*Finding, error) {
	return m.transition(ctx, p, id, note, StatusAcknowledged)
}

// Resolve closes an open or acknowledged finding. The finding stays.
func (m *Monitor) Resolve(ctx context.Context, p warden.Principal, id, note string) (*Finding, error) {
	return m.transition(ctx, p, id, note, StatusResolved)
}

func (m *Monitor) transition(ctx context.Context, p warden.Principal, id, note, to string) (*Finding, error) {
	if len(note) > 1024 || !printable(note) {
		return nil, warden.FieldError("note", "must be at most 1024 characters of printable text")
	}
	for attempt := 0; ; attempt++ {
		f, err := m.Get(ctx, p, id)
		if err != nil {
			return nil, err
		}
		if !canHandle(p, f) {
			return nil, warden.Errorf(warden.CodeForbidden, "handling findings needs the security role or ownership of the identity")
		}
		from := f.Status
		switch {
		case from == StatusResolved:
			return nil, warden.Errorf(warden.CodeConflict, "finding %s is already resolved", f.ID)
		case from == to:
			return nil, warden.Errorf(warden.CodeConflict, "finding %s is already %s", f.ID, to)
		}
		now := m.o.Now().UTC()
		f.Status = to
		if note != "" {
			f.Note = note
		}
		if to == StatusAcknowledged {
			f.AckedBy, f.AckedAt = p.Actor(), &now
		} else {
			f.ResolvedBy, f.ResolvedAt = p.Actor(), &now
		}
		err = m.o.Store.UpdateFinding(ctx, f, from)
		if warden.IsCode(err, warden.CodeConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		m.auditHuman(ctx, p, "finding."+map[string]string{StatusAcknowledged: "acknowledge", StatusResolved: "resolve"}[to], f.IdentityID, note,
			map[string]any{"finding_id": f.ID, "detector": f.Detector, "severity": string(f.Severity), "status": to})
		return f, nil
	}
}

func printable(s string) bool {
	for _, r := range s {
		if r == '\n' || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// clip cuts s to at most n bytes without splitting a rune.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !runeStart(s[n]) {
		n--
	}
	return s[:n]
}

func runeStart(b byte) bool { return b&0xc0 != 0x80 }
