package seal

import (
	"fmt"

	"warden"
)

// fail builds a *warden.Error with a user-safe message and a cause kept for
// errors.Is. Messages never contain key material or plaintext.
func fail(code warden.Code, cause error, format string, args ...any) *warden.Error {
	return &warden.Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

func fieldErr(field, format string, args ...any) *warden.Error {
	return warden.FieldError(field, format, args...)
}
