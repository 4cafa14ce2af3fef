// Package warden holds the vocabulary every other package shares: the error type
// with its stable codes, typed identifiers and the Secret type. It imports only
// the standard library so that every layer can depend on it.
package warden

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Clients match on it; renaming
// one breaks them.
type Code string

// Error codes shared by every package. The API maps them onto HTTP statuses in
// one place (internal/api).
const (
	CodeInvalid          Code = "invalid"
	CodeNotFound         Code = "not_found"
	CodeConflict         Code = "conflict"
	CodeUnauthenticated  Code = "unauthenticated"
	CodeForbidden        Code = "forbidden"
	CodeRateLimited      Code = "rate_limited"
	CodeApprovalRequired Code = "approval_required"
	CodeUnavailable      Code = "unavailable"
	CodeTooLarge         Code = "too_large"
	CodeInternal         Code = "internal"

	// Decision codes that are also errors of authentication.
	CodeIdentitySuspended      Code = "identity_suspended"
	CodeIdentityDecommissioned Code = "identity_decommissioned"
	CodeUnknownIdentity        Code = "unknown_identity"

	// Gateway codes: Warden refused or could not complete a governed call.
	CodeUnknownOperation      Code = "unknown_operation"
	CodeNoCredential          Code = "no_credential"
	CodeCredentialUnavailable Code = "credential_unavailable"
	CodeAuditUnavailable      Code = "audit_unavailable"
	CodeUpstreamUnavailable   Code = "upstream_unavailable"

	// Approval codes.
	CodeApprovalQuota   Code = "approval_quota"   // too many pending approvals for one identity
	CodeApprovalInvalid Code = "approval_invalid" // the presented approval does not cover this call
)

// Error is Warden's error: a stable code, a message that is safe to show to a
// caller, the offending field when there is one, and an optional cause that is
// never shown (it may hold SQL or driver detail).
type Error struct {
	Code    Code
	Message string
	Field   string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, &warden.Error{Code: c}) match by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Errorf builds an Error with a formatted, user-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError builds an invalid-input error that names the offending field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Wrap attaches a code and a safe message to an underlying cause. The cause is
// kept for logs and errors.Is but never shown to API callers.
func Wrap(err error, code Code, msg string) *Error {
	return &Error{Code: code, Message: msg, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none. A nil error has no code ("").
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code Code) bool { return err != nil && ErrorCode(err) == code }
