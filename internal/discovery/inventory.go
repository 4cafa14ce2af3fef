package discovery

import (
	"context"
	"regexp"
	"strings"
	"time"

	"warden"
)

// Inventory statuses of a discovered credential.
const (
	StatusOpen    = "open"
	StatusRotated = "rotated"
	StatusVaulted = "vaulted"
	StatusIgnored = "ignored"
)

// Location is one place a discovered credential was seen.
type Location struct {
	Source string    `json:"source,omitempty"` // the scanned repository or host, as the reporter names it
	File   string    `json:"file"`
	Line   int       `json:"line"`
	Commit string    `json:"commit,omitempty"`
	Author string    `json:"author,omitempty"`
	SeenAt time.Time `json:"seen_at"`
}

// Discovery is one discovered credential in the inventory, de-duplicated by
// fingerprint. It never holds the secret.
type Discovery struct {
	ID           string
	Fingerprint  string
	Rule         string
	Kind         string
	Preview      string
	Verified     bool
	Status       string
	IdentityID   string
	Owner        string
	Note         string
	CredentialID string // set when vaulted
	FirstSeen    time.Time
	LastSeen     time.Time
	Locations    []Location
	UpdatedBy    string
}

// MaxLocations bounds the locations kept per discovery (the newest win).
const MaxLocations = 100

// InventoryFilter selects discoveries.
type InventoryFilter struct {
	Status, Kind, Rule, IdentityID string
	Limit                          int
}

// InventoryStore persists the inventory. Upsert inserts d or, when its
// fingerprint exists, merges: last_seen, locations (newest MaxLocations),
// verified; it reports whether the row is new.
type InventoryStore interface {
	UpsertDiscovery(ctx context.Context, d *Discovery) (created bool, err error)
	GetDiscovery(ctx context.Context, id string) (*Discovery, error)
	ListDiscoveries(ctx context.Context, f InventoryFilter) ([]*Discovery, error)
	UpdateDiscovery(ctx context.Context, d *Discovery, rec warden.Change) error
}

// Inventory is the server-side inventory of discovered credentials.
type Inventory struct {
	store InventoryStore
	now   func() time.Time
}

// NewInventory returns an inventory over store.
func NewInventory(store InventoryStore) *Inventory {
	return &Inventory{store: store, now: time.Now}
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Reported is one finding as a scanner reports it: everything but the
// secret.
type Reported struct {
	Rule, Kind, File, Commit, Author, Fingerprint, Preview string
	Line                                                   int
	Verified                                               bool
}

// Report adds findings to the inventory. Findings whose preview could hold
// more than a short prefix of the secret are refused: the inventory must
// never become a store of secrets.
func (inv *Inventory) Report(ctx context.Context, p warden.Principal, source string, fs []Reported) (created, updated int, err error) {
	if !p.HasRole(warden.RoleSecurity) {
		return 0, 0, warden.Errorf(warden.CodeForbidden, "reporting discoveries needs the admin or security role")
	}
	if len(source) > 256 || strings.ContainsAny(source, "\x00\r\n") {
		return 0, 0, warden.FieldError("source", "at most 256 characters, one line")
	}
	if len(fs) > 10000 {
		return 0, 0, warden.FieldError("findings", "at most 10000 findings per report")
	}
	now := inv.now().UTC()
	for i, f := range fs {
		field := "findings[" + itoa(i) + "]"
		switch {
		case !fingerprintRE.MatchString(f.Fingerprint):
			return created, updated, warden.FieldError(field+".fingerprint", "must be 64 lowercase hex characters (HMAC-SHA256)")
		case f.Rule == "" || len(f.Rule) > 128 || f.Kind == "" || len(f.Kind) > 128:
			return created, updated, warden.FieldError(field+".rule", "rule and kind are required (at most 128 characters)")
		case len(f.File) > 4096 || len(f.Commit) > 64 || len(f.Author) > 512:
			return created, updated, warden.FieldError(field+".file", "file, commit or author too long")
		case !redactedPreview(f.Preview):
			return created, updated, warden.FieldError(field+".preview", "must be a redacted preview (a short prefix followed by '*')")
		}
		d := &Discovery{
			ID: warden.NewID("dsc_"), Fingerprint: f.Fingerprint, Rule: f.Rule, Kind: f.Kind, Preview: f.Preview,
			Verified: f.Verified, Status: StatusOpen, FirstSeen: now, LastSeen: now, UpdatedBy: p.Actor(),
			Locations: []Location{{Source: source, File: f.File, Line: f.Line, Commit: f.Commit, Author: f.Author, SeenAt: now}},
		}
		isNew, err := inv.store.UpsertDiscovery(ctx, d)
		if err != nil {
			return created, updated, err
		}
		if isNew {
			created++
		} else {
			updated++
		}
	}
	return created, updated, nil
}

// redactedPreview accepts what Preview produces: at most 12 visible
// characters, then asterisks.
func redactedPreview(s string) bool {
	i := strings.IndexByte(s, '*')
	if i < 0 || i > 12 || len(s) > 64 {
		return false
	}
	return strings.Trim(s[i:], "*") == ""
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// List returns discoveries, most recently seen first.
func (inv *Inventory) List(ctx context.Context, p warden.Principal, f InventoryFilter) ([]*Discovery, error) {
	if !p.HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading discoveries needs the admin, security or auditor role")
	}
	switch f.Status {
	case "", StatusOpen, StatusRotated, StatusVaulted, StatusIgnored:
	default:
		return nil, warden.FieldError("status", "must be open, rotated, vaulted or ignored")
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	return inv.store.ListDiscoveries(ctx, f)
}

// Get returns one discovery.
func (inv *Inventory) Get(ctx context.Context, p warden.Principal, id string) (*Discovery, error) {
	if !p.HasRole(warden.RoleSecurity, warden.RoleAuditor) {
		return nil, warden.Errorf(warden.CodeForbidden, "reading discoveries needs the admin, security or auditor role")
	}
	d, err := inv.store.GetDiscovery(ctx, id)
	if warden.IsCode(err, warden.CodeNotFound) {
		return nil, warden.Errorf(warden.CodeNotFound, "discovery %q not found", id)
	}
	return d, err
}

// ResolveInput changes a discovery's triage state.
type ResolveInput struct {
	Status     string // open | rotated | ignored (vaulted only through Vaulted)
	IdentityID string
	Owner      string
	Note       string
}

// Resolve records a triage decision.
func (inv *Inventory) Resolve(ctx context.Context, p warden.Principal, id string, in ResolveInput) (*Discovery, error) {
	if !p.HasRole(warden.RoleSecurity) {
		return nil, warden.Errorf(warden.CodeForbidden, "triaging discoveries needs the admin or security role")
	}
	switch in.Status {
	case StatusOpen, StatusRotated, StatusIgnored:
	default:
		return nil, warden.FieldError("status", "must be open, rotated or ignored (vault it to mark it vaulted)")
	}
	if len(in.Note) > 2000 || len(in.Owner) > 254 {
		return nil, warden.FieldError("note", "note at most 2000 characters, owner at most 254")
	}
	d, err := inv.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	d.Status, d.Note, d.UpdatedBy = in.Status, in.Note, p.Actor()
	if in.IdentityID != "" {
		d.IdentityID = in.IdentityID
	}
	if in.Owner != "" {
		d.Owner = in.Owner
	}
	rec := warden.NewChange(p, "discovery.resolve", "discovery", d.ID, map[string]any{"status": d.Status, "kind": d.Kind})
	return d, inv.store.UpdateDiscovery(ctx, d, rec)
}

// Vaulted marks a discovery as moved into the vault as credential credID.
func (inv *Inventory) Vaulted(ctx context.Context, p warden.Principal, id, credID, identityID string) (*Discovery, error) {
	d, err := inv.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	d.Status, d.CredentialID, d.UpdatedBy = StatusVaulted, credID, p.Actor()
	if identityID != "" {
		d.IdentityID = identityID
	}
	rec := warden.NewChange(p, "discovery.vault", "discovery", d.ID, map[string]any{"credential": credID})
	return d, inv.store.UpdateDiscovery(ctx, d, rec)
}
