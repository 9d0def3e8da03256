-- G8: how many pending readings a device dropped to make room (EDGE_OVERFLOW_POLICY=drop-oldest),
-- as the total its telemetry batches report (droppedCount). Portable: PostgreSQL and CockroachDB
-- both take ADD COLUMN IF NOT EXISTS; idempotent.
ALTER TABLE sync_status ADD COLUMN IF NOT EXISTS dropped_records_count BIGINT DEFAULT 0;
