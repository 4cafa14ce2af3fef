package authn

import (
	"crypto/sha256"
	"errors"
)

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }
