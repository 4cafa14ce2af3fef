-- Behavioural monitoring: findings (never deleted; status moves open ->
-- acknowledged -> resolved) and per-identity baseline snapshots.
CREATE TABLE monitor_findings (
    id             TEXT PRIMARY KEY,
    identity_id    TEXT NOT NULL,
    identity_name  TEXT NOT NULL DEFAULT '',
    owner          TEXT NOT NULL DEFAULT '',
    key_id         TEXT NOT NULL DEFAULT '',
    detector       TEXT NOT NULL,
    severity       TEXT NOT NULL,
    explanation    TEXT NOT NULL,
    action         TEXT NOT NULL DEFAULT '',
    evidence       TEXT NOT NULL DEFAULT '{}',
    action_taken   TEXT NOT NULL,
    status         TEXT NOT NULL,
    first_event_at BIGINT NOT NULL,
    detected_at    BIGINT NOT NULL,
    contained_at   BIGINT,
    acked_by       TEXT NOT NULL DEFAULT '',
    acked_at       BIGINT,
    resolved_by    TEXT NOT NULL DEFAULT '',
    resolved_at    BIGINT,
    note           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX monitor_findings_detected ON monitor_findings (detected_at, id);
CREATE INDEX monitor_findings_identity ON monitor_findings (identity_id, detected_at);
CREATE INDEX monitor_findings_status ON monitor_findings (status, detected_at);

CREATE TABLE monitor_baselines (
    identity_id TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
