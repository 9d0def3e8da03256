-- The control-plane schema (PostgreSQL variant: tests and the demo).
-- Same tables, columns and types as ../cockroachdb/001_initial_schema.sql (every integer column
-- BIGINT: PostgreSQL's INT is 32-bit, CockroachDB's 64-bit); indexes are separate CREATE INDEX
-- statements and there is no row-level TTL (bridge/db/retention.ts deletes expired telemetry, by
-- synced_at like CockroachDB's ttl_expiration_expression, in bounded chunks instead).
-- Idempotent: every statement is IF NOT EXISTS.

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
  content_hash BYTEA NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_device_time ON telemetry_data (device_id, "timestamp" DESC);

-- Hash-sharded on CockroachDB (USING HASH); PostgreSQL has no range hotspots to avoid.
CREATE INDEX IF NOT EXISTS idx_sensor_time ON telemetry_data (sensor_id, "timestamp" DESC);

-- PostgreSQL only: the retention job scans by write time, like CockroachDB's TTL.
CREATE INDEX IF NOT EXISTS idx_telemetry_synced_at ON telemetry_data (synced_at);

CREATE TABLE IF NOT EXISTS commands (
  command_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  command_type TEXT NOT NULL,
  payload JSONB NOT NULL,
  status TEXT DEFAULT 'pending', -- pending, delivered, executed, failed
  created_at TIMESTAMPTZ DEFAULT now(),
  delivered_at TIMESTAMPTZ,
  executed_at TIMESTAMPTZ,
  result JSONB
);

CREATE INDEX IF NOT EXISTS idx_device_status ON commands (device_id, status, created_at);

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
