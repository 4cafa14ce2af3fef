package identity

import (
	"errors"

	"warden"
)

func asErr(err error, target **warden.Error) bool { return errors.As(err, target) }
