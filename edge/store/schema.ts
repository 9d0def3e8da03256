/**
 * The edge's libSQL schema: the four base tables (telemetry_data,
 * device_config, command_queue, sync_log and their indexes), plus what the sync protocol needs:
 *
 * - telemetry_data.sync_batch_id: the batch the row's current content was last sent in
 *   (set when claimed, kept when released so a late sync/ack can still confirm it, cleared by a
 *   correction because the new content has not been sent yet);
 * - telemetry_data.sync_error: why a row is 'failed' (the bridge's rejection reason);
 * - rejected_readings: sensor payloads refused at the local listener, for diagnosis, bounded in
 *   rows and bytes (payload_bytes per row; the store drops the oldest first);
 * - edge_counters: what was dropped to keep the stores bounded (G8), reported upstream;
 * - command_queue / device_config lifecycle columns (migration 6, G6): see ./downstream-store.ts.
 *
 * Timestamps (timestamp, sync_timestamp, received_at, started_at, completed_at) are epoch
 * milliseconds; created_at keeps its original default (epoch seconds).
 *
 * Migrations are numbered; PRAGMA user_version records the last one applied. Each migration runs
 * in one write transaction together with the user_version bump, so it is applied fully or not at all.
 */
import type { Client } from '@libsql/client';

export interface Migration {
  version: number;
  description: string;
  statements: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description:
      'telemetry_data, device_config, command_queue, sync_log, plus sync protocol columns and rejected_readings',
    statements: [
      `CREATE TABLE IF NOT EXISTS telemetry_data (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        sensor_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data_type TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT,
        metadata TEXT,
        sync_status TEXT DEFAULT 'pending',
        sync_timestamp INTEGER,
        version INTEGER DEFAULT 1,
        created_at INTEGER DEFAULT (strftime('%s', 'now')),
        sync_batch_id TEXT,
        sync_error TEXT
      )`,
      `CREATE INDEX IF NOT EXISTS idx_sync_status ON telemetry_data(sync_status, timestamp)`,
      `CREATE INDEX IF NOT EXISTS idx_device_sensor ON telemetry_data(device_id, sensor_id, timestamp)`,
      `CREATE INDEX IF NOT EXISTS idx_sync_batch ON telemetry_data(sync_batch_id) WHERE sync_batch_id IS NOT NULL`,
      `CREATE TABLE IF NOT EXISTS device_config (
        id TEXT PRIMARY KEY,
        config_key TEXT NOT NULL UNIQUE,
        config_value TEXT NOT NULL,
        version INTEGER NOT NULL,
        applied_at INTEGER,
        received_at INTEGER NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS command_queue (
        id TEXT PRIMARY KEY,
        command_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT DEFAULT 'pending',
        received_at INTEGER NOT NULL,
        executed_at INTEGER,
        result TEXT
      )`,
      `CREATE TABLE IF NOT EXISTS sync_log (
        id TEXT PRIMARY KEY,
        sync_type TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        completed_at INTEGER,
        records_count INTEGER,
        status TEXT NOT NULL,
        error_message TEXT
      )`,
      `CREATE TABLE IF NOT EXISTS rejected_readings (
        id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL,
        reason TEXT NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS idx_rejected_received ON rejected_readings(received_at)`,
    ],
  },
  {
    version: 2,
    description: 'indexes that let history pruning find old synced readings and sync_log entries without a scan',
    statements: [
      // partial: only synced rows, so inserting and claiming readings does not maintain it
      `CREATE INDEX IF NOT EXISTS idx_synced_at ON telemetry_data(sync_status, sync_timestamp) WHERE sync_status = 'synced'`,
      `CREATE INDEX IF NOT EXISTS idx_sync_log_started ON sync_log(started_at)`,
    ],
  },
  {
    version: 3,
    description: 'failed readings carry the time they failed (sync_timestamp), and pruning finds old ones by it',
    statements: [
      `UPDATE telemetry_data SET sync_timestamp = timestamp WHERE sync_status = 'failed' AND sync_timestamp IS NULL`,
      `CREATE INDEX IF NOT EXISTS idx_failed_at ON telemetry_data(sync_status, sync_timestamp) WHERE sync_status = 'failed'`,
    ],
  },
  {
    version: 4,
    description: 'finds batches released after an ack timeout or a restart, to send them again under their own id',
    statements: [
      `CREATE INDEX IF NOT EXISTS idx_released_batches ON telemetry_data(timestamp) WHERE sync_status = 'pending' AND sync_batch_id IS NOT NULL`,
    ],
  },
  {
    version: 5,
    description:
      'bounded rejected_readings (bytes per row) and persistent counters of what was dropped to stay bounded',
    statements: [
      `ALTER TABLE rejected_readings ADD COLUMN payload_bytes INTEGER NOT NULL DEFAULT 0`,
      `UPDATE rejected_readings SET payload_bytes = length(CAST(payload AS BLOB))`,
      // name -> value; e.g. dropped_pending_readings (EDGE_OVERFLOW_POLICY=drop-oldest), dropped_rejected_readings
      `CREATE TABLE IF NOT EXISTS edge_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
    ],
  },
  {
    // G6: the downstream half (commands and config). Kept in its own migration so the telemetry
    // migrations stay as they are (edge/store/downstream-store.ts owns these columns).
    version: 6,
    description: 'command_queue and device_config carry the G6 lifecycle: state, expiry, pending reports',
    statements: [
      // command_queue.status: delivered | executing | executed | failed | rejected | expired | canceled
      `ALTER TABLE command_queue ADD COLUMN created_at TEXT`,
      `ALTER TABLE command_queue ADD COLUMN expires_at INTEGER`,
      `ALTER TABLE command_queue ADD COLUMN started_at INTEGER`,
      `ALTER TABLE command_queue ADD COLUMN error TEXT`,
      // the latest report (a ReportedCommandStatus) and whether the control plane confirmed it
      `ALTER TABLE command_queue ADD COLUMN report_status TEXT`,
      `ALTER TABLE command_queue ADD COLUMN report_at INTEGER`,
      `ALTER TABLE command_queue ADD COLUMN report_confirmed INTEGER NOT NULL DEFAULT 1`,
      `CREATE INDEX IF NOT EXISTS idx_command_reports ON command_queue(report_at) WHERE report_confirmed = 0`,
      `CREATE INDEX IF NOT EXISTS idx_command_status ON command_queue(status)`,
      // device_config: config_value is the value in effect (applied_version), version the newest
      // version handled (applied or rejected): an older one never downgrades
      `ALTER TABLE device_config ADD COLUMN applied_version INTEGER`,
      `ALTER TABLE device_config ADD COLUMN report_status TEXT`,
      `ALTER TABLE device_config ADD COLUMN report_error TEXT`,
      `ALTER TABLE device_config ADD COLUMN report_at INTEGER`,
      `ALTER TABLE device_config ADD COLUMN report_confirmed INTEGER NOT NULL DEFAULT 1`,
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS.reduce((highest, migration) => Math.max(highest, migration.version), 0);

export async function readSchemaVersion(client: Client): Promise<number> {
  const result = await client.execute('PRAGMA user_version');
  return Number(result.rows[0]?.['user_version'] ?? 0);
}

/** Applies every migration newer than the database's user_version; returns the versions before and after. */
export async function migrate(client: Client): Promise<{ from: number; to: number }> {
  const from = await readSchemaVersion(client);
  if (from > SCHEMA_VERSION) {
    throw new Error(
      `edge database schema version ${from} is newer than this agent understands (${SCHEMA_VERSION}); ` +
        'upgrade the agent or point EDGE_DB_URL at another file',
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= from) continue;
    const transaction = await client.transaction('write');
    try {
      for (const statement of migration.statements) await transaction.execute(statement);
      // user_version is part of the database header, so it commits (or rolls back) with the DDL
      await transaction.execute(`PRAGMA user_version = ${migration.version}`);
      await transaction.commit();
    } catch (error) {
      await transaction.rollback();
      throw new Error(
        `edge schema migration ${migration.version} (${migration.description}) failed: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    } finally {
      transaction.close();
    }
  }
  return { from, to: Math.max(from, SCHEMA_VERSION) };
}
