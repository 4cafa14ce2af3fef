package store_test

import (
	"testing"

	"warden/internal/seal"
	"warden/internal/seal/sealtest"
	"warden/internal/wardentest"
)

func TestSealKeyStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		sealtest.KeyStore(t, func(t *testing.T) seal.KeyStore { return wardentest.SQLite(t) })
	})
	t.Run("postgres", func(t *testing.T) {
		sealtest.KeyStore(t, func(t *testing.T) seal.KeyStore { return wardentest.Postgres(t) })
	})
}
