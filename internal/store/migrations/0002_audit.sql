-- The tamper-evident audit log (internal/audit, docs/audit.md).
--
-- audit_events is append-only: seq is assigned by the single writer that
-- holds the audit_head lock, gapless from 1; hash = SHA-256 over the
-- versioned canonical encoding of the row (v says which) and prev_hash.
-- Nothing in Warden updates or deletes these rows; triggers installed by
-- the store at start refuse it (internal/store/audit.go).
CREATE TABLE audit_events (
    seq           {{serial}},
    v             INTEGER NOT NULL,
    id            TEXT NOT NULL,
    time          BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL DEFAULT '',
    actor_roles   TEXT NOT NULL DEFAULT '',
    identity      TEXT NOT NULL DEFAULT '',
    action        TEXT NOT NULL DEFAULT '',
    resource      TEXT NOT NULL DEFAULT '',
    decision      TEXT NOT NULL DEFAULT '',
    code          TEXT NOT NULL DEFAULT '',
    policy        TEXT NOT NULL DEFAULT '',
    rule          TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    approval_id   TEXT NOT NULL DEFAULT '',
    credential_id TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL DEFAULT '',
    req_method    TEXT NOT NULL DEFAULT '',
    req_path      TEXT NOT NULL DEFAULT '',
    client_ip     TEXT NOT NULL DEFAULT '',
    user_agent    TEXT NOT NULL DEFAULT '',
    req_bytes     BIGINT NOT NULL DEFAULT 0,
    resp_bytes    BIGINT NOT NULL DEFAULT 0,
    status        BIGINT NOT NULL DEFAULT 0,
    latency_us    BIGINT NOT NULL DEFAULT 0,
    detail        TEXT NOT NULL DEFAULT '',
    prev_hash     {{blob}} NOT NULL,
    hash          {{blob}} NOT NULL
);
-- "The last 100 events of one identity" and the kind filter walk these
-- backwards by seq.
CREATE INDEX audit_events_identity ON audit_events (identity, seq);
CREATE INDEX audit_events_kind ON audit_events (kind, seq);
CREATE INDEX audit_events_time ON audit_events (time);

-- The chain's head, one row. Every append batch locks and advances it in the
-- same transaction as its events, so replicas sharing a database take turns
-- and seq stays gapless.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash {{blob}} NOT NULL
);

-- Signed checkpoints (seq, head hash, time). A copy of each is also appended
-- to the checkpoint file in the data directory, outside the database.
CREATE TABLE audit_checkpoints (
    seq    BIGINT PRIMARY KEY,
    hash   {{blob}} NOT NULL,
    time   BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    sig    {{blob}} NOT NULL
);

-- Keys the audit log keeps sealed by the keyring (the HMAC key for sensitive
-- values).
CREATE TABLE audit_keys (
    id         TEXT PRIMARY KEY,
    sealed     {{blob}} NOT NULL,
    created_at BIGINT NOT NULL
);

-- The changes table is the outbox of admin changes: each row is marked with
-- the audit seq that adopted it, in the same transaction as that audit
-- event. A per-row mark (not a high-water mark) because on PostgreSQL
-- changes commit out of seq order: a watermark would skip a change whose
-- transaction committed after a later one was pumped.
ALTER TABLE changes ADD COLUMN audit_seq BIGINT;
CREATE INDEX changes_unaudited ON changes (seq) WHERE audit_seq IS NULL;
