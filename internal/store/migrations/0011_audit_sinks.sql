-- Streaming audit sinks (internal/auditsink, docs/audit-sinks.md).
--
-- A sink keeps no copy of events: audit_events is its backlog. This table
-- holds, per configured sink, the last seq it delivered (its cursor). The
-- cursor only moves forward, by compare-and-set (UPDATE ... WHERE seq =
-- old), so replicas sharing a database never move it past an undelivered
-- event. owner and lease_until name the replica delivering for the sink
-- now, so replicas do not all send the same events; the lease only saves
-- duplicates, correctness rests on the compare-and-set.
CREATE TABLE audit_sink_cursors (
    name        TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);
