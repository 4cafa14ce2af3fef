package warden

import (
	"fmt"
	"log/slog"
)

// Secret holds a value that must never appear in output: its String, GoString,
// LogValue, MarshalJSON and MarshalText forms are redacted. Reveal is the only
// way to read it; grep for "Reveal(" in review.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

const redacted = "[redacted]"

// Reveal returns the secret's value. Call it only where the value is injected,
// sealed or compared.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Format redacts every verb, %#v and %x included.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }
