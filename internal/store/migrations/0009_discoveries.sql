-- Discovered credentials, de-duplicated by fingerprint (never the secret).
CREATE TABLE discoveries (
    id            TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL UNIQUE,
    rule          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    preview       TEXT NOT NULL,
    verified      BIGINT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,
    identity_id   TEXT NOT NULL DEFAULT '',
    owner         TEXT NOT NULL DEFAULT '',
    note          TEXT NOT NULL DEFAULT '',
    credential_id TEXT NOT NULL DEFAULT '',
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    locations     TEXT NOT NULL DEFAULT '[]',
    updated_by    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX discoveries_status ON discoveries (status, last_seen);
