// Package identity is the registry of non-human identities: their types,
// accountable owners, labels and lifecycle (active, suspended,
// decommissioned). The lifecycle rules live here, once, for every store.
package identity

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"

	"warden"
)

// Types of non-human identity.
const (
	TypeAIAgent        = "ai_agent"
	TypeServiceAccount = "service_account"
	TypeBot            = "bot"
	TypeWorkload       = "workload"
	TypeAPIClient      = "api_client"
)

// Types lists every valid identity type.
var Types = []string{TypeAIAgent, TypeServiceAccount, TypeBot, TypeWorkload, TypeAPIClient}

// Statuses. Decommissioned is final.
const (
	StatusActive         = "active"
	StatusSuspended      = "suspended"
	StatusDecommissioned = "decommissioned"
)

// Identity is one non-human identity.
type Identity struct {
	ID              string
	Name            string
	Type            string
	Owner           string // the accountable human, e.g. an email address
	Description     string
	Environment     string
	Labels          map[string]string
	Status          string
	StatusReason    string
	StatusActor     string
	StatusChangedAt time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
	LastUsedAt      *time.Time
	Version         int64 // optimistic concurrency: bumped on every update
}

// StatusChange is one entry of an identity's status history.
type StatusChange struct {
	Status string
	Reason string
	Actor  string
	At     time.Time
}

// Filter selects identities for List. Empty fields do not filter.
type Filter struct {
	Type   string
	Owner  string
	Status string
	Labels map[string]string // all must match
	Limit  int               // 1..1000, default 100
	Cursor string            // opaque; from the previous page
}

// Store is the data access the registry needs. GetIdentity accepts an id or
// a name. Create must fail with CodeConflict when the name or id exists.
// UpdateIdentity must fail with CodeConflict when the stored version differs
// from expectVersion (and CodeNotFound when the identity is gone), and must
// append the status history entry, when one is given, and the change record in
// the same transaction. Writes record rec in the same transaction.
type Store interface {
	CreateIdentity(ctx context.Context, id *Identity, first StatusChange, rec warden.Change) error
	GetIdentity(ctx context.Context, ref string) (*Identity, error)
	ListIdentities(ctx context.Context, f Filter) (ids []*Identity, next string, err error)
	UpdateIdentity(ctx context.Context, id *Identity, expectVersion int64, change *StatusChange, rec warden.Change) error
	StatusHistory(ctx context.Context, identityID string) ([]StatusChange, error)
	AllIdentities(ctx context.Context) ([]*Identity, error)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	envRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
)

const (
	maxLabels      = 64
	maxLabelValue  = 256
	maxDescription = 1024
	maxOwner       = 254
)

// ValidType reports whether t is a known identity type.
func ValidType(t string) bool {
	for _, v := range Types {
		if v == t {
			return true
		}
	}
	return false
}

// ValidateName checks an identity name: lowercase letters, digits, '.',
// '_' and '-', starting with a letter or digit, at most 63 characters. Names
// never start with the id prefix, so a reference is unambiguous.
func ValidateName(name string) error {
	if name == "" {
		return warden.FieldError("name", "is required")
	}
	if !nameRE.MatchString(name) {
		return warden.FieldError("name", "must be 1-63 characters of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if strings.HasPrefix(name, warden.PrefixIdentity) {
		return warden.FieldError("name", "must not start with %q (reserved for ids)", warden.PrefixIdentity)
	}
	return nil
}

// ValidateOwner checks the accountable owner: required, printable, no spaces.
func ValidateOwner(owner string) error {
	if owner == "" {
		return warden.FieldError("owner", "is required: every identity needs an accountable human")
	}
	if len(owner) > maxOwner || strings.ContainsAny(owner, " \t\r\n") || !printable(owner) {
		return warden.FieldError("owner", "must be at most %d printable characters without spaces (e.g. an email address)", maxOwner)
	}
	return nil
}

func validate(id *Identity) error {
	if err := ValidateName(id.Name); err != nil {
		return err
	}
	if !ValidType(id.Type) {
		return warden.FieldError("type", "must be one of %s", strings.Join(Types, ", "))
	}
	if err := ValidateOwner(id.Owner); err != nil {
		return err
	}
	if len(id.Description) > maxDescription || !printableText(id.Description) {
		return warden.FieldError("description", "must be at most %d characters of printable text", maxDescription)
	}
	if id.Environment != "" && !envRE.MatchString(id.Environment) {
		return warden.FieldError("environment", "must be 1-32 characters of lowercase letters, digits, '.', '_' or '-'")
	}
	if len(id.Labels) > maxLabels {
		return warden.FieldError("labels", "at most %d labels", maxLabels)
	}
	keys := make([]string, 0, len(id.Labels))
	for k := range id.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !warden.ValidLabelKey(k) {
			return warden.FieldError("labels", "label key %q must be 1-63 characters of letters, digits, '.', '_', '/' or '-'", k)
		}
		if v := id.Labels[k]; len(v) > maxLabelValue || !printable(v) {
			return warden.FieldError("labels."+k, "must be at most %d printable characters", maxLabelValue)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// printableText allows newlines and tabs besides printable characters.
func printableText(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f {
			return false
		}
	}
	return true
}

// Clone returns a deep copy.
func (id *Identity) Clone() *Identity {
	c := *id
	if id.Labels != nil {
		c.Labels = make(map[string]string, len(id.Labels))
		for k, v := range id.Labels {
			c.Labels[k] = v
		}
	}
	if id.LastUsedAt != nil {
		t := *id.LastUsedAt
		c.LastUsedAt = &t
	}
	return &c
}
