package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"warden"
	"warden/internal/authn"
	"warden/internal/identity"
	"warden/internal/store"
	"warden/internal/wardentest"
)

var ctx = context.Background()

func rec(action, target string) warden.Change {
	return warden.NewChange(warden.Principal{Kind: warden.PrincipalAdmin, ID: "root"}, action, "test", target, map[string]any{"k": "v"})
}

func newIdentity(name string) *identity.Identity {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &identity.Identity{ID: warden.NewID(warden.PrefixIdentity), Name: name, Type: identity.TypeAIAgent, Owner: "alice@example.com",
		Labels: map[string]string{"team": "support"}, Status: identity.StatusActive, CreatedAt: now, UpdatedAt: now, StatusChangedAt: now, Version: 1}
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		for i := 0; i < 2; i++ {
			s, err := store.Open(ctx, store.Options{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			v, err := s.SchemaVersion(ctx)
			if err != nil || v < 1 {
				t.Fatalf("version %d, %v", v, err)
			}
			s.Close()
		}
	})
	t.Run("postgres-concurrent", func(t *testing.T) {
		dsn := wardentest.PostgresDSN(t)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := store.Open(ctx, store.Options{DSN: dsn})
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent migrate: %v", err)
		}
	})
}

func TestIdentityStore(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, s *store.Store) {
		id := newIdentity("support-agent")
		first := identity.StatusChange{Status: identity.StatusActive, Reason: "created", Actor: "root", At: id.CreatedAt}
		if err := s.CreateIdentity(ctx, id, first, rec("identity.create", id.ID)); err != nil {
			t.Fatal(err)
		}
		// Name collision is a conflict and leaves nothing behind.
		dup := newIdentity("support-agent")
		if err := s.CreateIdentity(ctx, dup, first, rec("identity.create", dup.ID)); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("duplicate name: got %v, want conflict", err)
		}
		if _, err := s.GetIdentity(ctx, dup.ID); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("duplicate left a row: %v", err)
		}
		byName, err := s.GetIdentity(ctx, "support-agent")
		if err != nil || byName.ID != id.ID || byName.Labels["team"] != "support" || !byName.CreatedAt.Equal(id.CreatedAt) {
			t.Fatalf("get by name: %+v %v", byName, err)
		}
		byID, err := s.GetIdentity(ctx, id.ID)
		if err != nil || byID.Name != "support-agent" {
			t.Fatalf("get by id: %v", err)
		}
		// SQL metacharacters are data, never SQL.
		if _, err := s.GetIdentity(ctx, "x' OR '1'='1"); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("injection probe: %v", err)
		}

		// Optimistic update.
		next := byID.Clone()
		next.Status, next.Version = identity.StatusSuspended, 2
		ch := &identity.StatusChange{Status: identity.StatusSuspended, Reason: "probe", Actor: "root", At: time.Now()}
		if err := s.UpdateIdentity(ctx, next, 1, ch, rec("identity.suspend", id.ID)); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateIdentity(ctx, next, 1, ch, rec("identity.suspend", id.ID)); !warden.IsCode(err, warden.CodeConflict) {
			t.Fatalf("stale version: %v", err)
		}
		ghost := newIdentity("ghost")
		if err := s.UpdateIdentity(ctx, ghost, 1, nil, rec("identity.update", ghost.ID)); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("missing identity: %v", err)
		}
		hist, err := s.StatusHistory(ctx, id.ID)
		if err != nil || len(hist) != 2 || hist[1].Status != identity.StatusSuspended || hist[1].Reason != "probe" {
			t.Fatalf("history: %+v %v", hist, err)
		}
		changes, err := s.ListChanges(ctx, id.ID, 10)
		if err != nil || len(changes) != 2 || changes[0].Action != "identity.suspend" {
			t.Fatalf("changes: %+v %v", changes, err)
		}
	})
}

func TestIdentityListPagination(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, s *store.Store) {
		for i := 0; i < 25; i++ {
			id := newIdentity("agent-" + string(rune('a'+i)))
			if i%2 == 0 {
				id.Labels = map[string]string{"team": "even"}
				id.Type = identity.TypeBot
			}
			if err := s.CreateIdentity(ctx, id, identity.StatusChange{Status: "active", Actor: "root", At: time.Now()}, rec("identity.create", id.ID)); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		cursor := ""
		pages := 0
		for {
			page, next, err := s.ListIdentities(ctx, identity.Filter{Limit: 10, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, id := range page {
				if seen[id.ID] {
					t.Fatalf("duplicate %s across pages", id.ID)
				}
				seen[id.ID] = true
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != 25 || pages != 3 {
			t.Fatalf("saw %d in %d pages", len(seen), pages)
		}
		even, _, err := s.ListIdentities(ctx, identity.Filter{Limit: 100, Labels: map[string]string{"team": "even"}, Type: identity.TypeBot})
		if err != nil || len(even) != 13 {
			t.Fatalf("label filter: %d %v", len(even), err)
		}
		page, next, err := s.ListIdentities(ctx, identity.Filter{Limit: 5, Labels: map[string]string{"team": "even"}})
		if err != nil || len(page) != 5 || next == "" {
			t.Fatalf("label page: %d %q %v", len(page), next, err)
		}
		none, _, err := s.ListIdentities(ctx, identity.Filter{Limit: 10, Owner: "'; DROP TABLE identities; --"})
		if err != nil || len(none) != 0 {
			t.Fatalf("metachar owner: %v", err)
		}
		if _, _, err := s.ListIdentities(ctx, identity.Filter{Limit: 10, Cursor: "!!notbase64"}); !warden.IsCode(err, warden.CodeInvalid) {
			t.Fatalf("bad cursor: %v", err)
		}
	})
}

func TestKeyStore(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, s *store.Store) {
		id := newIdentity("k-agent")
		if err := s.CreateIdentity(ctx, id, identity.StatusChange{Status: "active", Actor: "root", At: time.Now()}, rec("identity.create", id.ID)); err != nil {
			t.Fatal(err)
		}
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		k := &authn.Key{ID: warden.NewID(warden.PrefixKey), IdentityID: id.ID, Hash: "h1", Hint: "wdn_ak_abcd...", CreatedAt: time.Now().UTC(), CreatedBy: "root", ExpiresAt: &exp}
		if err := s.CreateAPIKey(ctx, k, rec("key.create", k.ID)); err != nil {
			t.Fatal(err)
		}
		got, err := s.APIKeyByHash(ctx, "h1")
		if err != nil || got.ID != k.ID || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || got.RevokedAt != nil {
			t.Fatalf("by hash: %+v %v", got, err)
		}
		if _, err := s.APIKeyByHash(ctx, "nope"); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if err := s.RevokeAPIKey(ctx, "nhi_other", k.ID, time.Now(), rec("key.revoke", k.ID)); !warden.IsCode(err, warden.CodeNotFound) {
			t.Fatalf("revoke via other identity: %v", err)
		}
		if err := s.RevokeAPIKey(ctx, id.ID, k.ID, time.Now(), rec("key.revoke", k.ID)); err != nil {
			t.Fatal(err)
		}
		rev, err := s.RevocationState(ctx, time.Now())
		if err != nil || len(rev.Keys) != 1 || rev.Keys[0] != k.ID {
			t.Fatalf("revocations: %+v %v", rev, err)
		}
		if err := s.RevokeTokenID(ctx, "jti_1", time.Now().Add(time.Hour), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeTokenID(ctx, "jti_1", time.Now().Add(time.Hour), time.Now()); err != nil {
			t.Fatalf("second revoke: %v", err)
		}
		if err := s.RevokeTokenID(ctx, "jti_old", time.Now().Add(-2*time.Hour), time.Now()); err != nil {
			t.Fatal(err)
		}
		rev, _ = s.RevocationState(ctx, time.Now())
		if len(rev.TokenIDs) != 1 || rev.TokenIDs[0] != "jti_1" {
			t.Fatalf("jtis: %v (expired ones must be pruned)", rev.TokenIDs)
		}
		at := &authn.AdminToken{ID: warden.NewID(warden.PrefixAdminToken), Name: "ops", Subject: "bob@example.com", Roles: []string{"auditor", "security"}, Hash: "ah", Hint: "wdn_at_x...", CreatedAt: time.Now(), CreatedBy: "root"}
		if err := s.CreateAdminToken(ctx, at, rec("admin_token.create", at.ID)); err != nil {
			t.Fatal(err)
		}
		gotA, err := s.AdminTokenByHash(ctx, "ah")
		if err != nil || len(gotA.Roles) != 2 || gotA.Subject != "bob@example.com" {
			t.Fatalf("admin by hash: %+v %v", gotA, err)
		}
		if err := s.TouchAPIKeys(ctx, map[string]int64{k.ID: time.Now().UnixMicro()}); err != nil {
			t.Fatal(err)
		}
		keys, _ := s.ListAPIKeys(ctx, id.ID)
		if len(keys) != 1 || keys[0].LastUsedAt == nil {
			t.Fatalf("touch: %+v", keys)
		}
	})
}
