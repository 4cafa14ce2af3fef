-- Credentials (the vault) and their sealed secret versions.
CREATE TABLE credentials (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    connector    TEXT NOT NULL,
    identity_id  TEXT NOT NULL DEFAULT '',
    owner        TEXT NOT NULL DEFAULT '',
    description  TEXT NOT NULL DEFAULT '',
    config       TEXT NOT NULL DEFAULT '{}',
    rotation_sec BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    rotated_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (connector, identity_id)
);
CREATE TABLE credential_versions (
    credential_id TEXT NOT NULL,
    version       BIGINT NOT NULL,
    ciphertext    {{blob}} NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (credential_id, version)
);

-- Connectors in force and every version of them.
CREATE TABLE connectors (
    name         TEXT PRIMARY KEY,
    version      BIGINT NOT NULL,
    document     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL
);
