package config

import "warden"

func newSecret(s string) warden.Secret { return warden.NewSecret(s) }
