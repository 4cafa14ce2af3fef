-- Just-in-time elevations: requests and the state of their grants.
CREATE TABLE elevations (
    id            TEXT PRIMARY KEY,
    identity_id   TEXT NOT NULL,
    identity_name TEXT NOT NULL,
    owner         TEXT NOT NULL,
    actions       TEXT NOT NULL,
    resources     TEXT NOT NULL DEFAULT '{}',
    duration_sec  BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_at    BIGINT,
    decided_by    TEXT NOT NULL DEFAULT '',
    comment       TEXT NOT NULL DEFAULT '',
    expires_at    BIGINT,
    revoked_at    BIGINT,
    revoked_by    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX elevations_status ON elevations (status, created_at);
CREATE INDEX elevations_identity ON elevations (identity_id, created_at);
