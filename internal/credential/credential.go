// Package credential is the vault: credential records, their sealed secrets,
// bindings to connectors and identities, and resolution for the gateway.
// Secrets are sealed with the keyring (internal/seal) under associated data
// that binds each ciphertext to its credential and version; they are
// write-only through the API and never leave this package except as
// warden.Secret values handed to the injector.
package credential

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"warden"
)

// Types of credential and the secret fields each requires.
const (
	TypeBearer = "bearer" // {token}
	TypeHeader = "header" // {name, value}
	TypeBasic  = "basic"  // {username, password}
	TypeQuery  = "query"  // {name, value}
)

// typeSpec is what a credential type needs: its required and optional
// secret fields and a check of its non-secret config.
type typeSpec struct {
	required []string
	optional []string
	// secret, when set, checks the secret fields beyond presence.
	secret func(fields map[string]string) error
	// config, when set, checks the non-secret config (and rejects keys it
	// does not know); o says what the server allows (dev mode).
	config func(cfg map[string]any, o *Options) error
}

// specs holds every known type. Written only at init time (RegisterType
// from package init functions), read concurrently afterwards.
var specs = map[string]*typeSpec{
	TypeBearer: {required: []string{"token"}},
	TypeHeader: {required: []string{"name", "value"}},
	TypeBasic:  {required: []string{"username", "password"}},
	TypeQuery:  {required: []string{"name", "value"}},
}

// RegisterType adds a credential type with its required secret fields. It
// must be called at init time only (the registry is not locked).
func RegisterType(name string, fields ...string) { specs[name] = &typeSpec{required: fields} }

func registerSpec(name string, s *typeSpec) { specs[name] = s }

// Types lists the known credential types.
func Types() []string {
	out := make([]string, 0, len(specs))
	for t := range specs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Credential is a credential's metadata; the secret is sealed separately.
type Credential struct {
	ID          string
	Name        string
	Type        string
	Connector   string
	IdentityID  string // "" means: serves every identity (the connector default)
	Owner       string
	Description string
	Config      map[string]any // non-secret settings (token URLs, scopes, grants)
	Rotation    time.Duration  // rotate every; 0 = no policy
	// RotationGrace is how long a superseded secret version stays stored
	// (and openable) after a rotation before the sweeper retires it; 0
	// means the service default (Options.RotationGrace).
	RotationGrace time.Duration
	ExpiresAt     *time.Time
	Version       int64
	CreatedAt     time.Time
	CreatedBy     string
	UpdatedAt     time.Time
	RotatedAt     time.Time
	LastUsedAt    *time.Time
}

// Sealed is one version of a credential's secret as stored. A retired
// version keeps its row (history) but no ciphertext.
type Sealed struct {
	CredentialID string
	Version      int64
	Ciphertext   []byte
	CreatedAt    time.Time
	// RetireAt is when a superseded version is retired (nil for the
	// current version).
	RetireAt *time.Time
	// RetiredAt is when the sweeper erased the ciphertext.
	RetiredAt *time.Time
	// PreviousRetireAt is an instruction to UpdateCredential, not a stored
	// field: earlier versions that have no RetireAt yet get this one.
	PreviousRetireAt time.Time
}

// RotationDue reports whether the credential is past its rotation policy.
func (c *Credential) RotationDue(now time.Time) bool {
	return c.Rotation > 0 && now.Sub(c.RotatedAt) >= c.Rotation
}

// Store is the data access the vault needs. CreateCredential fails with
// CodeConflict when the name, or the (connector, identity) binding, is taken.
// Writes that change the secret insert the new sealed version in the same
// transaction. Writes record rec in the same transaction.
type Store interface {
	CreateCredential(ctx context.Context, c *Credential, s Sealed, rec warden.Change) error
	GetCredential(ctx context.Context, name string) (*Credential, error)
	ListCredentials(ctx context.Context, connector string) ([]*Credential, error)
	// UpdateCredential replaces metadata; with s non-nil it also stores a
	// new secret version (c.Version must equal s.Version). It fails with
	// CodeConflict when the stored version is not expectVersion.
	UpdateCredential(ctx context.Context, c *Credential, expectVersion int64, s *Sealed, rec warden.Change) error
	DeleteCredential(ctx context.Context, id string, rec warden.Change) error
	// SealedVersion returns one stored version of a credential's secret.
	SealedVersion(ctx context.Context, credentialID string, version int64) (Sealed, error)
	// BindingFor returns the credential serving connector for identityID:
	// the identity's own binding if any, else the connector default, else
	// CodeNotFound.
	BindingFor(ctx context.Context, connector, identityID string) (*Credential, error)
	TouchCredentials(ctx context.Context, at map[string]int64) error
	// CredentialByID returns a credential by id (CodeNotFound if gone).
	CredentialByID(ctx context.Context, id string) (*Credential, error)
	// ListVersions returns a credential's versions, oldest first, without
	// ciphertext.
	ListVersions(ctx context.Context, credentialID string) ([]Sealed, error)
	// RetireVersions erases the ciphertext of every version whose RetireAt
	// is at or before now and returns how many it retired. SealedVersion
	// answers CodeNotFound for a retired version.
	RetireVersions(ctx context.Context, now time.Time) (int, error)
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	fieldNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidName reports whether s is a valid credential (or connector) name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// validateSecret checks that fields holds the type's required fields and
// nothing but its required and optional fields, each non-empty and free of
// control characters (header injection).
func validateSecret(typ string, fields map[string]string) error {
	spec, ok := specs[typ]
	if !ok {
		return warden.FieldError("type", "unknown credential type %q (want one of %s)", typ, strings.Join(Types(), ", "))
	}
	all := append(append([]string(nil), spec.required...), spec.optional...)
	for _, f := range spec.required {
		if v, ok := fields[f]; !ok || v == "" {
			return warden.FieldError("secret."+f, "is required for type %s (fields: %s)", typ, strings.Join(all, ", "))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		v := fields[f]
		if !slices.Contains(all, f) {
			return warden.FieldError("secret."+f, "is not a field of type %s (fields: %s)", typ, strings.Join(all, ", "))
		}
		if v == "" {
			return warden.FieldError("secret."+f, "must not be empty (leave it out instead)")
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return warden.FieldError("secret."+f, "must not contain line breaks or NUL")
		}
		if len(v) > 16<<10 {
			return warden.FieldError("secret."+f, "is longer than 16 KiB")
		}
	}
	if typ == TypeHeader || typ == TypeQuery {
		if !fieldNameRE.MatchString(fields["name"]) {
			return warden.FieldError("secret.name", "must be a header or parameter name (letters, digits, '.', '_', '-')")
		}
		if typ == TypeHeader {
			switch strings.ToLower(fields["name"]) {
			case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "cookie":
				return warden.FieldError("secret.name", "header %q cannot carry a credential", fields["name"])
			}
		}
	}
	if spec.secret != nil {
		return spec.secret(fields)
	}
	return nil
}
