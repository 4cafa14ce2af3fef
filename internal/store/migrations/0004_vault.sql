-- Vault lifecycle: rotation grace, retired secret versions, and leases of
-- dynamic database credentials (persisted so that a restart sweeps the roles
-- of leases that ended while it was down).
ALTER TABLE credentials ADD COLUMN grace_sec BIGINT NOT NULL DEFAULT 0;
ALTER TABLE credential_versions ADD COLUMN retire_at BIGINT;
ALTER TABLE credential_versions ADD COLUMN retired_at BIGINT;
CREATE INDEX credential_versions_retire ON credential_versions (retire_at);

CREATE TABLE credential_leases (
    id            TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    connector     TEXT NOT NULL,
    identity_id   TEXT NOT NULL,
    role_name     TEXT NOT NULL UNIQUE,
    password      {{blob}} NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ended_at      BIGINT,
    end_reason    TEXT NOT NULL DEFAULT '',
    dropped_at    BIGINT
);
CREATE INDEX credential_leases_active ON credential_leases (credential_id, identity_id, expires_at);
CREATE INDEX credential_leases_pending ON credential_leases (dropped_at, expires_at);
