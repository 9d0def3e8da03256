-- The control-plane schema (CockroachDB variant).
-- Idempotent: every statement is IF NOT EXISTS. The migration runner executes the statements
-- one by one, outside explicit transactions (CockroachDB's rule for schema changes).
-- Requires CockroachDB >= 23.1 (outbound foreign keys on a row-level-TTL table); written against
-- the v24.1 documentation.
--
-- Additions to the base tables, identical in the PostgreSQL variant:
--   telemetry_data.content_hash  SHA-256 of the reading's canonical content; decides ties between
--                                two different readings with the same id and version, in the
--                                bridge and in the upsert's WHERE guard alike.
--   explicit integer widths      every integer column is BIGINT: INT is 64-bit on CockroachDB but
--                                32-bit on PostgreSQL (https://www.cockroachlabs.com/docs/v24.1/int),
--                                and both variants must accept the same values. node-postgres
--                                returns BIGINT (int8) as a string: the bridge converts where it
--                                reads one.
--   telemetry_data.synced_at     NOT NULL: the retention (TTL here, a job on PostgreSQL) keys on it.

CREATE TABLE IF NOT EXISTS devices (
  device_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_name TEXT NOT NULL,
  device_type TEXT NOT NULL,
  location TEXT,
  registered_at TIMESTAMPTZ DEFAULT now(),
  last_seen_at TIMESTAMPTZ,
  status TEXT DEFAULT 'active', -- active, inactive, offline
  metadata JSONB
);

-- Row-level TTL (https://www.cockroachlabs.com/docs/v24.1/row-level-ttl): a row expires 90 days
-- after its last write. The bridge sets synced_at = now() on every insert and update, so
-- ttl_expiration_expression on synced_at expires exactly what bridge/db/retention.ts deletes on
-- PostgreSQL (synced_at older than the retention), and nothing hidden (no crdb_internal_expiration
-- column) differs between the two variants. The expression is a string literal with doubled
-- quotes: the migration splitter does not understand $$ quoting.
--   ttl_job_cron = '0 */4 * * *': the docs recommend running the TTL job no more often than
--     gc.ttlseconds (default 4 h), so a run does not scan the MVCC garbage of the previous one.
--   ttl_delete_rate_limit = 10000: since v24.1 the default is 100 rows/s per leaseholder per
--     table, i.e. ~300 rows/s on a 3-node cluster, far below this system's ingest (thousands of
--     readings/s; 100 readings/s per device by design): the job would never catch up and the
--     table would grow without bound. 10,000 rows/s per leaseholder clears four hours of
--     10,000 readings/s in well under four hours on three nodes; the deletes still run at low
--     priority under admission control, so foreground ingest keeps precedence.
-- idx_sensor_time is hash-sharded (https://www.cockroachlabs.com/docs/v24.1/hash-sharded-indexes):
-- sensor ids repeat across devices ("temp-1" on every device), so all current readings of one
-- sensor id land at the end of one (sensor_id, timestamp) key span: a sequential write hotspot on
-- one range. idx_device_time needs no sharding: device ids are random UUIDs.
CREATE TABLE IF NOT EXISTS telemetry_data (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  sensor_id TEXT NOT NULL,
  "timestamp" TIMESTAMPTZ NOT NULL,
  data_type TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  unit TEXT,
  metadata JSONB,
  version BIGINT DEFAULT 1,
  synced_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  content_hash BYTEA NOT NULL,
  INDEX idx_device_time (device_id, "timestamp" DESC),
  INDEX idx_sensor_time (sensor_id, "timestamp" DESC) USING HASH
) WITH (
  ttl_expiration_expression = 'synced_at + INTERVAL ''90 days''',
  ttl_job_cron = '0 */4 * * *',
  ttl_delete_rate_limit = 10000
);

CREATE TABLE IF NOT EXISTS commands (
  command_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  command_type TEXT NOT NULL,
  payload JSONB NOT NULL,
  status TEXT DEFAULT 'pending', -- pending, delivered, executed, failed
  created_at TIMESTAMPTZ DEFAULT now(),
  delivered_at TIMESTAMPTZ,
  executed_at TIMESTAMPTZ,
  result JSONB,
  INDEX idx_device_status (device_id, status, created_at)
);

CREATE TABLE IF NOT EXISTS device_configs (
  config_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  config_key TEXT NOT NULL,
  config_value JSONB NOT NULL,
  version BIGINT NOT NULL,
  created_at TIMESTAMPTZ DEFAULT now(),
  UNIQUE (device_id, config_key)
);

CREATE TABLE IF NOT EXISTS sync_status (
  device_id UUID PRIMARY KEY REFERENCES devices(device_id),
  last_sync_at TIMESTAMPTZ,
  last_sync_status TEXT, -- success, partial, failed
  pending_records_count BIGINT DEFAULT 0,
  total_synced_records BIGINT DEFAULT 0,
  last_error TEXT,
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE IF NOT EXISTS conflict_log (
  conflict_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  record_id TEXT NOT NULL,
  conflict_type TEXT NOT NULL,
  local_value JSONB,
  remote_value JSONB,
  resolved_value JSONB,
  resolution_strategy TEXT,
  detected_at TIMESTAMPTZ DEFAULT now()
);
