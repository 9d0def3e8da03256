-- The control-plane schema of the design document (CockroachDB variant).
-- Idempotent: every statement is IF NOT EXISTS. The migration runner executes the statements
-- one by one, outside explicit transactions (CockroachDB's rule for schema changes).
-- Requires CockroachDB >= 23.1 (outbound foreign keys on a row-level-TTL table).
--
-- Additions to the design document, identical in the PostgreSQL variant:
--   telemetry_data.content_hash  SHA-256 of the reading's canonical content; decides ties between
--                                two different readings with the same id and version, in the
--                                bridge and in the upsert's WHERE guard alike.

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

-- Row-level TTL: a row expires 90 days after it was last written (CockroachDB keeps a hidden
-- crdb_internal_expiration column, refreshed on every UPDATE).
CREATE TABLE IF NOT EXISTS telemetry_data (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  device_id UUID NOT NULL REFERENCES devices(device_id),
  sensor_id TEXT NOT NULL,
  timestamp TIMESTAMPTZ NOT NULL,
  data_type TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  unit TEXT,
  metadata JSONB,
  version INT DEFAULT 1,
  synced_at TIMESTAMPTZ DEFAULT now(),
  content_hash BYTEA NOT NULL,
  INDEX idx_device_time (device_id, timestamp DESC),
  INDEX idx_sensor_time (sensor_id, timestamp DESC)
) WITH (ttl_expire_after = '90 days');

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
  version INT NOT NULL,
  created_at TIMESTAMPTZ DEFAULT now(),
  UNIQUE (device_id, config_key)
);

CREATE TABLE IF NOT EXISTS sync_status (
  device_id UUID PRIMARY KEY REFERENCES devices(device_id),
  last_sync_at TIMESTAMPTZ,
  last_sync_status TEXT, -- success, partial, failed
  pending_records_count INT DEFAULT 0,
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
