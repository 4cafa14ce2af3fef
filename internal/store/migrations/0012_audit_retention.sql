-- Audit retention (internal/audit/retention.go, docs/audit-retention.md).
--
-- A retention cut archives events first_seq..seq to a file and deletes them
-- from audit_events in one transaction that also inserts the anchor row.
-- The anchor is where the chain in the database now starts: the first
-- remaining event must be seq + 1 with prev_hash = hash, and a signed
-- checkpoint at seq (checkpoint_seq; checkpoints are never deleted) must
-- vouch for hash, and the anchor itself is signed. Anchors are append-only
-- like the events (triggers
-- installed by the store at start).
CREATE TABLE audit_anchors (
    seq            BIGINT PRIMARY KEY,
    first_seq      BIGINT NOT NULL,
    hash           {{blob}} NOT NULL,
    checkpoint_seq BIGINT NOT NULL,
    file           TEXT NOT NULL,
    file_sha256    {{blob}} NOT NULL,
    time           BIGINT NOT NULL,
    actor          TEXT NOT NULL DEFAULT '',
    -- Signed with the audit signing key (audit.Anchor.SignedMessage): a
    -- row inserted by anyone without the master key does not verify.
    key_id         TEXT NOT NULL DEFAULT '',
    sig            {{blob}}
);

-- The gate that lets exactly one retention transaction past the trigger
-- refusing DELETE on audit_events: the transaction inserts the cut's seq
-- here (it must match an anchor row), deletes, and removes the row before
-- it commits, so the table is always empty outside that transaction and a
-- plain DELETE is still refused.
CREATE TABLE audit_retention_gate (
    seq BIGINT PRIMARY KEY
);
