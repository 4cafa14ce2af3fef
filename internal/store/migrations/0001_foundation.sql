-- Identities: the inventory of non-human identities.
CREATE TABLE identities (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    type              TEXT NOT NULL,
    owner             TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    environment       TEXT NOT NULL DEFAULT '',
    labels            TEXT NOT NULL DEFAULT '{}',
    status            TEXT NOT NULL,
    status_reason     TEXT NOT NULL DEFAULT '',
    status_actor      TEXT NOT NULL DEFAULT '',
    status_changed_at BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    last_used_at      BIGINT,
    version           BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX identities_owner ON identities (owner);
CREATE INDEX identities_type ON identities (type);

-- Every status change with who made it and why.
CREATE TABLE identity_status_history (
    seq         {{serial}},
    identity_id TEXT NOT NULL REFERENCES identities (id),
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX identity_status_history_identity ON identity_status_history (identity_id, seq);

-- Agent API keys: only a SHA-256 hash of the key is kept.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    identity_id  TEXT NOT NULL REFERENCES identities (id),
    hash         TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_identity ON api_keys (identity_id);

-- Admin tokens with roles; subject is the human they act for.
CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    roles        TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Revoked access-token ids, kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);

-- Admin changes with their actor; the audit log adopts these.
CREATE TABLE changes (
    seq         {{serial}},
    id          TEXT NOT NULL UNIQUE,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'
);

-- Keys wrapped by the master key (internal/seal).
CREATE TABLE seal_keys (
    id         TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    wrapped    {{blob}} NOT NULL,
    created_at BIGINT NOT NULL,
    state      TEXT NOT NULL
);

-- Policies in force and every version of them.
CREATE TABLE policies (
    name         TEXT PRIMARY KEY,
    version      BIGINT NOT NULL,
    document     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL
);
CREATE TABLE policy_versions (
    name         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    document     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    deleted      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
