-- Human approvals of single governed calls.
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    identity_id   TEXT NOT NULL,
    identity_name TEXT NOT NULL,
    owner         TEXT NOT NULL,
    action        TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    resource      TEXT NOT NULL DEFAULT '{}',
    fingerprint   TEXT NOT NULL,
    policy        TEXT NOT NULL,
    rule          TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    uses_left     BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    decided_at    BIGINT,
    decided_by    TEXT NOT NULL DEFAULT '',
    comment       TEXT NOT NULL DEFAULT '',
    used_at       BIGINT
);
CREATE INDEX approvals_identity_status ON approvals (identity_id, status);
CREATE INDEX approvals_status_created ON approvals (status, created_at);
