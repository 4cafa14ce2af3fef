// Package apitype holds the REST API's wire types: what clients send and
// receive. They are separate from the domain types so the domain can change
// without breaking clients. Standard library only.
package apitype

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Problem is an RFC 9457 problem document. Code is stable; clients match on
// it, never on Detail.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Code      string `json:"code"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Policy, Rule and RetryAfter are set on governed calls Warden refused.
	Policy     string `json:"policy,omitempty"`
	Rule       string `json:"rule,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// Identity is a non-human identity.
type Identity struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Type            string            `json:"type"`
	Owner           string            `json:"owner"`
	Description     string            `json:"description"`
	Environment     string            `json:"environment"`
	Labels          map[string]string `json:"labels"`
	Status          string            `json:"status"`
	StatusReason    string            `json:"status_reason"`
	StatusActor     string            `json:"status_actor"`
	StatusChangedAt time.Time         `json:"status_changed_at"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	LastUsedAt      *time.Time        `json:"last_used_at"`
}

// CreateIdentity is the body of POST /v1/identities.
type CreateIdentity struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Owner       string            `json:"owner"`
	Description string            `json:"description,omitempty"`
	Environment string            `json:"environment,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// UpdateIdentity is the body of PATCH /v1/identities/{id}; absent fields
// stay as they are; labels replaces every label.
type UpdateIdentity struct {
	Type        *string            `json:"type,omitempty"`
	Owner       *string            `json:"owner,omitempty"`
	Description *string            `json:"description,omitempty"`
	Environment *string            `json:"environment,omitempty"`
	Labels      *map[string]string `json:"labels,omitempty"`
}

// IdentityList is a page of identities.
type IdentityList struct {
	Identities []Identity `json:"identities"`
	NextCursor string     `json:"next_cursor"`
}

// StatusRequest is the body of suspend, resume and delete.
type StatusRequest struct {
	Reason string `json:"reason"`
}

// StatusChange is one entry of an identity's status history.
type StatusChange struct {
	Status string    `json:"status"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	At     time.Time `json:"at"`
}

// StatusHistory lists status changes, oldest first.
type StatusHistory struct {
	History []StatusChange `json:"history"`
}

// CreateKey is the body of POST /v1/identities/{id}/keys.
type CreateKey struct {
	ExpiresIn Duration `json:"expires_in,omitempty"`
}

// KeyCreated is the answer to key creation; Key is shown only here.
type KeyCreated struct {
	KeyID     string     `json:"key_id"`
	Key       string     `json:"key"`
	Identity  string     `json:"identity"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// Key is an API key's metadata.
type Key struct {
	KeyID      string     `json:"key_id"`
	Identity   string     `json:"identity"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// KeyList lists an identity's keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// TokenResponse is the OAuth2 token endpoint's answer (RFC 6749 5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// OAuthError is the OAuth2 token endpoint's error (RFC 6749 5.2), with
// Warden's stable code alongside.
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
	Code             string `json:"code"`
}

// CreateAdminToken is the body of POST /v1/admin-tokens.
type CreateAdminToken struct {
	Name      string   `json:"name"`
	Subject   string   `json:"subject"`
	Roles     []string `json:"roles"`
	ExpiresIn Duration `json:"expires_in,omitempty"`
}

// AdminToken is an admin token's metadata; Token is set only at creation.
type AdminToken struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Subject    string     `json:"subject"`
	Roles      []string   `json:"roles"`
	Token      string     `json:"token,omitempty"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// AdminTokenList lists admin tokens.
type AdminTokenList struct {
	AdminTokens []AdminToken `json:"admin_tokens"`
}

// Change is one recorded admin change.
type Change struct {
	ID         string         `json:"id"`
	At         time.Time      `json:"at"`
	Actor      string         `json:"actor"`
	Action     string         `json:"action"`
	TargetKind string         `json:"target_kind"`
	Target     string         `json:"target"`
	Detail     map[string]any `json:"detail"`
}

// ChangeList lists admin changes, newest first.
type ChangeList struct {
	Changes []Change `json:"changes"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Duration accepts a number of seconds, a Go duration ("90m") or a number
// of days ("7d"), and encodes as whole seconds.
type Duration time.Duration

// MarshalJSON encodes whole seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatInt(int64(time.Duration(d)/time.Second), 10)), nil
}

// UnmarshalJSON accepts seconds, "90m" or "7d".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		secs, err := n.Int64()
		if err != nil || secs < 0 {
			return fmt.Errorf("duration must be a whole, non-negative number of seconds")
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be seconds or a string like \"90m\" or \"7d\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration or a number of days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 32)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q (use e.g. \"90m\", \"24h\" or \"7d\")", s)
	}
	return v, nil
}

// Policy is a stored policy's metadata (the document itself is served in
// its own content type by GET /v1/policies/{name}).
type Policy struct {
	Name        string    `json:"name"`
	Version     int64     `json:"version"`
	ContentType string    `json:"content_type"`
	UpdatedAt   time.Time `json:"updated_at"`
	UpdatedBy   string    `json:"updated_by"`
	Deleted     bool      `json:"deleted,omitempty"`
}

// PolicyList lists policies.
type PolicyList struct {
	Policies []Policy `json:"policies"`
}

// PolicyVersions lists a policy's versions, oldest first.
type PolicyVersions struct {
	Versions []Policy `json:"versions"`
}

// AuthorizeRequest is the body of POST /v1/authorize.
type AuthorizeRequest struct {
	Identity string          `json:"identity"`
	Action   string          `json:"action"`
	Resource map[string]any  `json:"resource,omitempty"`
	Params   map[string]any  `json:"params,omitempty"`
	Context  map[string]any  `json:"context,omitempty"`
	Request  *RequestContext `json:"request,omitempty"`
	DryRun   bool            `json:"dry_run,omitempty"`
	Explain  bool            `json:"explain,omitempty"`
}

// RequestContext lets an admin ask what would be decided at a time, from
// an address.
type RequestContext struct {
	Time   *time.Time `json:"time,omitempty"`
	IP     string     `json:"ip,omitempty"`
	Method string     `json:"method,omitempty"`
	Path   string     `json:"path,omitempty"`
}

// Decision is a policy decision.
type Decision struct {
	Decision   string          `json:"decision"`
	Code       string          `json:"code"`
	Reason     string          `json:"reason"`
	Policy     string          `json:"policy"`
	Rule       string          `json:"rule"`
	RetryAfter int64           `json:"retry_after,omitempty"`
	Matched    []DecisionMatch `json:"matched,omitempty"`
	Trace      []DecisionTrace `json:"trace,omitempty"`
}

// DecisionMatch names a rule that matched.
type DecisionMatch struct {
	Policy string `json:"policy"`
	Rule   string `json:"rule"`
	Effect string `json:"effect"`
	Error  string `json:"error,omitempty"`
}

// DecisionTrace explains why a considered rule did or did not match.
type DecisionTrace struct {
	Policy string `json:"policy"`
	Rule   string `json:"rule"`
	Effect string `json:"effect"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// ExecuteRequest is the body of POST /v1/execute.
type ExecuteRequest struct {
	Connector string         `json:"connector"`
	Operation string         `json:"operation"`
	Resource  map[string]any `json:"resource,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
}

// ExecuteResponse is the upstream's answer to an executed operation. Body
// is the upstream body as JSON when it was JSON, as a string when it was
// text; BodyBase64 carries binary bodies.
type ExecuteResponse struct {
	Status     int               `json:"status"`
	Headers    map[string]string `json:"headers"`
	Body       json.RawMessage   `json:"body,omitempty"`
	BodyBase64 []byte            `json:"body_base64,omitempty"`
}

// Credential is a credential's metadata; secrets are write-only and never
// returned.
type Credential struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	Connector   string         `json:"connector"`
	Identity    string         `json:"identity,omitempty"`
	Owner       string         `json:"owner,omitempty"`
	Description string         `json:"description,omitempty"`
	Config      map[string]any `json:"config,omitempty"`
	Rotation    *Rotation      `json:"rotation,omitempty"`
	RotationDue bool           `json:"rotation_due"`
	ExpiresAt   *time.Time     `json:"expires_at"`
	Version     int64          `json:"version"`
	CreatedAt   time.Time      `json:"created_at"`
	CreatedBy   string         `json:"created_by"`
	UpdatedAt   time.Time      `json:"updated_at"`
	RotatedAt   time.Time      `json:"rotated_at"`
	LastUsedAt  *time.Time     `json:"last_used_at"`
}

// Rotation is a credential's rotation policy.
type Rotation struct {
	Every Duration `json:"every"`
	// Grace is how long the superseded version stays stored (and may still
	// be injected by replicas whose cache has not expired) before it is
	// retired; default 24h.
	Grace Duration `json:"grace,omitempty"`
}

// CreateCredential is the body of POST /v1/credentials.
type CreateCredential struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Connector   string            `json:"connector"`
	Identity    string            `json:"identity,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Description string            `json:"description,omitempty"`
	Secret      map[string]string `json:"secret"`
	Config      map[string]any    `json:"config,omitempty"`
	Rotation    *Rotation         `json:"rotation,omitempty"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty"`
}

// UpdateCredential is the body of PATCH /v1/credentials/{name}.
type UpdateCredential struct {
	Owner       *string         `json:"owner,omitempty"`
	Description *string         `json:"description,omitempty"`
	Config      *map[string]any `json:"config,omitempty"`
	Rotation    *Rotation       `json:"rotation,omitempty"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
}

// RotateCredential is the body of POST /v1/credentials/{name}/rotate.
type RotateCredential struct {
	Secret map[string]string `json:"secret"`
}

// CredentialList lists credentials.
type CredentialList struct {
	Credentials []Credential `json:"credentials"`
}

// Connector is a stored connector's summary.
type Connector struct {
	Name        string            `json:"name"`
	Version     int64             `json:"version"`
	BaseURL     string            `json:"base_url"`
	Auth        string            `json:"auth"`
	Description string            `json:"description,omitempty"`
	Operations  []ConnectorOp     `json:"operations"`
	UpdatedAt   time.Time         `json:"updated_at"`
	UpdatedBy   string            `json:"updated_by"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// ConnectorOp is one operation of a connector.
type ConnectorOp struct {
	ID          string `json:"id"`
	Action      string `json:"action"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Class       string `json:"class"`
	Description string `json:"description,omitempty"`
}

// ConnectorList lists connectors.
type ConnectorList struct {
	Connectors []Connector `json:"connectors"`
}

// CatalogList lists the built-in connector catalog.
type CatalogList struct {
	Connectors []Connector `json:"connectors"`
}

// ApprovalPending is the 202 answer to a governed call that needs a human.
// Poll GET /v1/approvals/{approval_id}; once approved, repeat the identical
// call with header `Warden-Approval: <approval_id>`.
type ApprovalPending struct {
	ApprovalID string    `json:"approval_id"`
	Status     string    `json:"status"`
	ExpiresAt  time.Time `json:"expires_at"`
	Reason     string    `json:"reason,omitempty"`
	Policy     string    `json:"policy,omitempty"`
	Rule       string    `json:"rule,omitempty"`
}

// Approval is a request for a human decision about one call.
type Approval struct {
	ID           string         `json:"id"`
	Identity     string         `json:"identity"`
	IdentityName string         `json:"identity_name"`
	Owner        string         `json:"owner"`
	Action       string         `json:"action"`
	Method       string         `json:"method"`
	Path         string         `json:"path"`
	Resource     map[string]any `json:"resource,omitempty"`
	Fingerprint  string         `json:"fingerprint"`
	Policy       string         `json:"policy"`
	Rule         string         `json:"rule"`
	Reason       string         `json:"reason"`
	Status       string         `json:"status"`
	UsesLeft     int            `json:"uses_left"`
	Required     int            `json:"required"`
	Approvers    []string       `json:"approvers,omitempty"`
	ApprovedBy   []string       `json:"approved_by"`
	CreatedAt    time.Time      `json:"created_at"`
	ExpiresAt    time.Time      `json:"expires_at"`
	DecidedAt    *time.Time     `json:"decided_at"`
	DecidedBy    string         `json:"decided_by,omitempty"`
	Comment      string         `json:"comment,omitempty"`
	UsedAt       *time.Time     `json:"used_at"`
}

// ApprovalList lists approvals, newest first.
type ApprovalList struct {
	Approvals []Approval `json:"approvals"`
}

// ApprovalDecision is the body of approve and deny.
type ApprovalDecision struct {
	Comment string `json:"comment,omitempty"`
}

// CreateElevation is the body of POST /v1/elevations.
type CreateElevation struct {
	Identity  string            `json:"identity"`
	Actions   []string          `json:"actions"`
	Resources map[string]string `json:"resources,omitempty"`
	Duration  Duration          `json:"duration"`
	Reason    string            `json:"reason"`
}

// Elevation is a just-in-time grant request and its state.
type Elevation struct {
	ID           string            `json:"id"`
	Identity     string            `json:"identity"`
	IdentityName string            `json:"identity_name"`
	Actions      []string          `json:"actions"`
	Resources    map[string]string `json:"resources,omitempty"`
	Duration     Duration          `json:"duration"`
	Reason       string            `json:"reason"`
	RequestedBy  string            `json:"requested_by"`
	Status       string            `json:"status"`
	Policy       string            `json:"policy"`
	CreatedAt    time.Time         `json:"created_at"`
	DecidedAt    *time.Time        `json:"decided_at"`
	DecidedBy    string            `json:"decided_by,omitempty"`
	Comment      string            `json:"comment,omitempty"`
	ExpiresAt    *time.Time        `json:"expires_at"`
	RevokedAt    *time.Time        `json:"revoked_at"`
	RevokedBy    string            `json:"revoked_by,omitempty"`
}

// ElevationList lists elevations, newest first.
type ElevationList struct {
	Elevations []Elevation `json:"elevations"`
}

// ReportedFinding is one scanner finding sent to the inventory: never the
// secret, only its keyed fingerprint and a redacted preview.
type ReportedFinding struct {
	Rule        string `json:"rule"`
	Kind        string `json:"kind"`
	File        string `json:"file"`
	Line        int    `json:"line"`
	Commit      string `json:"commit,omitempty"`
	Author      string `json:"author,omitempty"`
	Fingerprint string `json:"fingerprint"`
	Preview     string `json:"preview"`
	Verified    bool   `json:"verified"`
}

// DiscoveryReport is the body of POST /v1/discoveries.
type DiscoveryReport struct {
	Source   string            `json:"source,omitempty"`
	Findings []ReportedFinding `json:"findings"`
}

// DiscoveryReportResult counts what a report changed.
type DiscoveryReportResult struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
}

// DiscoveryLocation is one place a credential was seen.
type DiscoveryLocation struct {
	Source string    `json:"source,omitempty"`
	File   string    `json:"file"`
	Line   int       `json:"line"`
	Commit string    `json:"commit,omitempty"`
	Author string    `json:"author,omitempty"`
	SeenAt time.Time `json:"seen_at"`
}

// Discovery is a discovered credential in the inventory.
type Discovery struct {
	ID          string              `json:"id"`
	Fingerprint string              `json:"fingerprint"`
	Rule        string              `json:"rule"`
	Kind        string              `json:"kind"`
	Preview     string              `json:"preview"`
	Verified    bool                `json:"verified"`
	Status      string              `json:"status"`
	Identity    string              `json:"identity,omitempty"`
	Owner       string              `json:"owner,omitempty"`
	Note        string              `json:"note,omitempty"`
	Credential  string              `json:"credential,omitempty"`
	FirstSeen   time.Time           `json:"first_seen"`
	LastSeen    time.Time           `json:"last_seen"`
	Locations   []DiscoveryLocation `json:"locations"`
}

// DiscoveryList lists discoveries, most recently seen first.
type DiscoveryList struct {
	Discoveries []Discovery `json:"discoveries"`
}

// ResolveDiscovery is the body of POST /v1/discoveries/{id}/resolve.
type ResolveDiscovery struct {
	Status   string `json:"status"`
	Identity string `json:"identity,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Note     string `json:"note,omitempty"`
}

// VaultDiscovery is the body of POST /v1/discoveries/{id}/vault: the
// credential to create from the discovered secret.
type VaultDiscovery struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Connector string            `json:"connector"`
	Identity  string            `json:"identity,omitempty"`
	Secret    map[string]string `json:"secret"`
}
