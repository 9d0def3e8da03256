-- G6: commands and device config (docs/contract.md, Commands and Config; bridge/downstream/).
-- Identical in both variants (portable SQL: ADD COLUMN IF NOT EXISTS and partial indexes exist in
-- PostgreSQL and CockroachDB >= 20.2); idempotent.
--
-- commands: the lifecycle of schemas/command-lifecycle.ts in `status` (pending, delivered,
-- executing, executed, failed, rejected, expired, canceled). Every transition has its timestamp:
--   delivered_at, started_at   the edge's report of delivered / executing (coalesced: an `executed`
--                              report without the earlier ones fills them too)
--   finished_at                any terminal state (executed_at, from 001, is kept for `executed`)
--   canceled_at                canceled by an operator
--   updated_at                 the database time of the last write: the change poller's key
--   expires_at                 NULL: never expires
--   error                      why a command failed, was rejected or expired
-- The status is changed only by UPDATE … WHERE status IN (COMMAND_TRANSITION_SOURCES[target]).
ALTER TABLE commands ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
ALTER TABLE commands ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE commands ADD COLUMN IF NOT EXISTS started_at TIMESTAMPTZ;
ALTER TABLE commands ADD COLUMN IF NOT EXISTS finished_at TIMESTAMPTZ;
ALTER TABLE commands ADD COLUMN IF NOT EXISTS canceled_at TIMESTAMPTZ;
ALTER TABLE commands ADD COLUMN IF NOT EXISTS error TEXT;

-- the change poller: rows written since its last look (another bridge's or API instance's commands)
CREATE INDEX IF NOT EXISTS idx_commands_updated_at ON commands (updated_at);
-- live commands of a device (reconciliation, liveForDevice) and the expiry sweep
CREATE INDEX IF NOT EXISTS idx_commands_live ON commands (device_id, created_at)
  WHERE status IN ('pending', 'delivered', 'executing');
CREATE INDEX IF NOT EXISTS idx_commands_expiry ON commands (expires_at)
  WHERE status IN ('pending', 'delivered');
-- keyset pagination of the operator's list (newest first)
CREATE INDEX IF NOT EXISTS idx_commands_created ON commands (created_at, command_id);

-- device_configs: desired (config_value, version) next to reported (reported_version, _status,
-- _error, _at). A deleted key is a tombstone (deleted_at set, version kept): its retained topic is
-- cleared and reconciled, and a key set again continues from its old version, so a device that
-- applied version 3 never sees a new "version 1" it would ignore as older.
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ;
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS reported_version BIGINT;
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS reported_status TEXT;
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS reported_error TEXT;
ALTER TABLE device_configs ADD COLUMN IF NOT EXISTS reported_at TIMESTAMPTZ;

CREATE INDEX IF NOT EXISTS idx_device_configs_updated_at ON device_configs (updated_at);
-- "which devices have not applied version N of key K"
CREATE INDEX IF NOT EXISTS idx_device_configs_key ON device_configs (config_key, device_id);

-- presence (devices/{id}/status, "the later `at` wins; at an equal `at`, offline wins"): the `at`
-- of the status message that set devices.status ('online' or 'offline')
ALTER TABLE devices ADD COLUMN IF NOT EXISTS status_at TIMESTAMPTZ;
