package credential

import (
	"context"
	"errors"
	"time"

	"warden"
)

// ListOverdue returns the credentials past their rotation policy (GET
// /v1/credentials?rotation=overdue). Types Warden rotates itself appear
// here only while their background rotation keeps failing.
func (s *Service) ListOverdue(ctx context.Context, p warden.Principal) ([]*Credential, error) {
	all, err := s.List(ctx, p, "")
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	var out []*Credential
	for _, c := range all {
		if c.RotationDue(now) {
			out = append(out, c)
		}
	}
	return out, nil
}

// SelfRotating reports whether Warden rotates credentials of typ itself
// (OAuth types and dynamic database roles); static secrets are only
// flagged as overdue.
func SelfRotating(typ string) bool { return isOAuth(typ) || typ == TypePostgresDynamic }

// Run does the vault's background work every interval until ctx ends (see
// Sweep) and writes last-used times; when ctx ends it waits for
// revocations started by IdentityChanged and flushes last-used times once
// more.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	defer func() {
		s.Wait()
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.FlushLastUsed(fctx); err != nil {
			s.log.Warn("flushing credential last-used times", "err", err)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("vault background work", "err", err)
			}
			if err := s.FlushLastUsed(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flushing credential last-used times", "err", err)
			}
		}
	}
}

// Sweep runs one pass of background work at the service clock's now:
// refreshes access tokens that are in use and near their refresh time,
// rotates self-rotating credentials whose policy is due, reports static
// ones that are overdue (once per credential and process), retires secret
// versions past their grace, drops the roles of ended leases (including
// those that ended while Warden was down) and drops expired cache entries.
// It is safe to call concurrently with calls being served.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.o.Now()
	var errs []error
	errs = append(errs, s.refreshTokens(ctx, now))
	errs = append(errs, s.rotateDue(ctx, now))
	if _, err := s.o.Store.RetireVersions(ctx, now.UTC()); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.sweepLeases(ctx, now))
	s.pruneCache(now)
	return errors.Join(errs...)
}

// refreshTokens renews held access tokens at their refresh time when they
// were served since the last renewal; unused ones are dropped when they
// expire, so idle credentials cost no requests to their providers.
func (s *Service) refreshTokens(ctx context.Context, now time.Time) error {
	var errs []error
	s.tokens.Range(func(k, v any) bool {
		id, st := k.(string), v.(*tokenState)
		t := st.tok.Load()
		if t == nil || now.Before(t.refreshAt) {
			return true
		}
		if !st.used.Swap(false) {
			if !now.Before(t.expires) {
				s.tokens.CompareAndDelete(id, st)
			}
			return true
		}
		cred, err := s.o.Store.CredentialByID(ctx, id)
		if err != nil {
			if warden.IsCode(err, warden.CodeNotFound) {
				s.tokens.Delete(id)
				return true
			}
			errs = append(errs, err)
			return true
		}
		if _, _, err := s.accessToken(ctx, cred, now); err != nil {
			errs = append(errs, err)
		}
		s.Purge()
		return true
	})
	return errors.Join(errs...)
}

// rotateDue rotates the self-rotating credentials whose policy is due:
// OAuth credentials get a fresh access token (and, for refresh tokens, the
// provider's rotated refresh token when it returns one); dynamic
// PostgreSQL credentials end their leases early so that the next use mints
// a new role. RotatedAt records the rotation.
func (s *Service) rotateDue(ctx context.Context, now time.Time) error {
	all, err := s.o.Store.ListCredentials(ctx, "")
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range all {
		if !c.RotationDue(now) {
			continue
		}
		if !SelfRotating(c.Type) {
			s.warnedMu.Lock()
			first := !s.warned[c.ID]
			s.warned[c.ID] = true
			s.warnedMu.Unlock()
			if first {
				s.log.Warn("credential rotation overdue", "credential", c.Name, "rotated_at", c.RotatedAt, "every", c.Rotation.String())
			}
			continue
		}
		if err := s.rotateSelf(ctx, c, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) rotateSelf(ctx context.Context, c *Credential, now time.Time) error {
	switch {
	case isOAuth(c.Type):
		st := s.tokenStateFor(c.ID)
		unlock, err := s.lock(ctx, "oauth\x00"+c.ID)
		if err != nil {
			return err
		}
		t, err := s.fetchToken(ctx, c, st, now)
		if err == nil {
			st.tok.Store(t)
		}
		unlock()
		if err != nil {
			return err
		}
	case c.Type == TypePostgresDynamic && s.leases != nil:
		recs, err := s.leases.ListLeases(ctx, LeaseFilter{CredentialID: c.ID, ActiveAt: now})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := s.endAndDrop(ctx, warden.Principal{}, r, "rotation"); err != nil {
				return err
			}
		}
	}
	// Re-read: a refresh-token rotation may have stored a new version.
	cur, err := s.o.Store.CredentialByID(ctx, c.ID)
	if err != nil {
		return err
	}
	next := *cur
	next.RotatedAt, next.UpdatedAt = now.UTC(), now.UTC()
	rec := warden.NewChange(warden.Principal{}, "credential.rotate", "credential", c.ID, map[string]any{"name": c.Name, "by": "schedule"})
	if err := s.o.Store.UpdateCredential(ctx, &next, cur.Version, nil, rec); err != nil && !warden.IsCode(err, warden.CodeConflict) {
		return err
	}
	s.Purge()
	return nil
}

// sweepLeases drops the roles of leases that ended or expired.
func (s *Service) sweepLeases(ctx context.Context, now time.Time) error {
	if s.leases == nil {
		return nil
	}
	recs, err := s.leases.PendingDrops(ctx, now.UTC(), 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if err := s.drop(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneCache removes expired entries so that identities that stopped
// calling do not keep unsealed material in memory.
func (s *Service) pruneCache(now time.Time) {
	n := now.UnixNano()
	s.cache.Range(func(k, v any) bool {
		if n >= v.(*cached).expires {
			if s.cache.CompareAndDelete(k, v) {
				s.cacheN.Add(-1)
			}
		}
		return true
	})
	s.leaseCache.Range(func(k, v any) bool {
		if n >= v.(*leaseEntry).expires {
			if s.leaseCache.CompareAndDelete(k, v) {
				s.cacheN.Add(-1)
			}
		}
		return true
	})
}
