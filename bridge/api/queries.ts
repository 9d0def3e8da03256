/**
 * The REST API's reads and its one write (device registration) on the control-plane database.
 * Portable SQL (CockroachDB and PostgreSQL). Lists are keyset-paged (./pagination.ts): each page
 * is one index range, and timestamps travel in cursors as the database's own text (microseconds
 * and offset included), so a page boundary never falls between two rows of the same millisecond.
 *   - telemetry of a device by time: idx_device_time (device_id, "timestamp" DESC), optionally
 *     filtered by sensor (tests/integration/api-telemetry.test.ts checks the plan with EXPLAIN);
 *   - devices by device_id (primary key); conflicts by detected_at, conflict_id;
 *   - live commands of a device: idx_device_status (device_id, status, created_at).
 */
import { LIVE_COMMAND_STATUSES } from '../../schemas/command-lifecycle.js';
import type { Database } from '../db/connection.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import { decodeCursor, pageFrom } from './pagination.js';

export interface PageRequest {
  limit: number;
  after?: string;
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString());
const count = (value: string | number | null): number => (value === null ? 0 : Number(value));

interface DeviceRow {
  device_id: string;
  device_name: string;
  device_type: string;
  location: string | null;
  registered_at: Date | null;
  last_seen_at: Date | null;
  status: string | null;
  metadata: unknown;
  has_sync: boolean;
  last_sync_at: Date | null;
  last_sync_status: string | null;
  pending_records_count: string | null;
  total_synced_records: string | null;
  dropped_records_count: string | null;
  last_error: string | null;
}

const DEVICE_SELECT = `
  SELECT d.device_id, d.device_name, d.device_type, d.location, d.registered_at, d.last_seen_at, d.status, d.metadata,
         s.device_id IS NOT NULL AS has_sync, s.last_sync_at, s.last_sync_status, s.pending_records_count,
         s.total_synced_records, s.dropped_records_count, s.last_error
    FROM devices d LEFT JOIN sync_status s ON s.device_id = d.device_id`;

function syncSummary(row: DeviceRow) {
  return {
    lastSyncAt: iso(row.last_sync_at),
    lastSyncStatus: row.last_sync_status,
    pendingRecordsCount: count(row.pending_records_count),
    totalSyncedRecords: count(row.total_synced_records),
    droppedRecordsCount: count(row.dropped_records_count),
    lastError: row.last_error,
  };
}

function deviceView(row: DeviceRow) {
  return {
    deviceId: row.device_id,
    name: row.device_name,
    type: row.device_type,
    location: row.location,
    registeredAt: iso(row.registered_at),
    metadata: row.metadata,
    presence: { status: row.status, lastSeenAt: iso(row.last_seen_at) },
    sync: row.has_sync ? syncSummary(row) : null,
  };
}
export type DeviceView = ReturnType<typeof deviceView>;

export async function listDevices(db: Database, page: PageRequest): Promise<Page<DeviceView>> {
  const after = page.after === undefined ? null : String(decodeCursor('devices', page.after, 1)[0]);
  const rows = await db.any<DeviceRow>(
    `${DEVICE_SELECT} WHERE ($1::uuid IS NULL OR d.device_id > $1::uuid) ORDER BY d.device_id LIMIT $2`,
    [after, page.limit + 1],
  );
  return pageFrom(rows, page.limit, 'devices', (row) => [row.device_id], deviceView);
}

export async function getDevice(db: Database, deviceId: string): Promise<DeviceView | null> {
  const row = await db.oneOrNone<DeviceRow>(`${DEVICE_SELECT} WHERE d.device_id = $1`, [deviceId]);
  return row === null ? null : deviceView(row);
}

/** The seed's getDeviceSyncStatus: the sync_status row, the live commands, the device's presence. */
export async function deviceSyncStatus(db: Database, deviceId: string) {
  const row = await db.oneOrNone<DeviceRow & { pending_commands: string }>(
    `SELECT q.*, (SELECT count(*) FROM commands c
                   WHERE c.device_id = q.device_id AND c.status IN ($2:csv)) AS pending_commands
       FROM (${DEVICE_SELECT} WHERE d.device_id = $1) q`,
    [deviceId, LIVE_COMMAND_STATUSES],
  );
  if (row === null) return null;
  return {
    deviceId: row.device_id,
    ...syncSummary(row),
    pendingCommands: count(row.pending_commands),
    presence: { status: row.status, lastSeenAt: iso(row.last_seen_at) },
  };
}

export interface Registration {
  deviceId: string;
  name: string;
  type: string;
  location?: string;
  metadata?: Record<string, unknown>;
}

/**
 * Creates the devices row, or updates name, type, location and metadata of an existing one
 * (a device auto-registered by its first telemetry, whose name is its id). `created` says which.
 */
export async function registerDevice(
  db: Database,
  registration: Registration,
  retry: TransactionRetryOptions = {},
): Promise<{ created: boolean; device: DeviceView }> {
  const values = [
    registration.deviceId,
    registration.name,
    registration.type,
    registration.location ?? null,
    registration.metadata === undefined ? null : JSON.stringify(registration.metadata),
  ];
  return runSerializable(
    db,
    'register-device',
    async (t) => {
      const updated = await t.result(
        `UPDATE devices SET device_name = $2, device_type = $3, location = $4, metadata = $5::jsonb WHERE device_id = $1`,
        values,
      );
      if (updated.rowCount === 0) {
        await t.none(
          `INSERT INTO devices (device_id, device_name, device_type, location, metadata, status)
           VALUES ($1, $2, $3, $4, $5::jsonb, 'active')`,
          values,
        );
      }
      const row = await t.one<DeviceRow>(`${DEVICE_SELECT} WHERE d.device_id = $1`, [registration.deviceId]);
      return { created: updated.rowCount === 0, device: deviceView(row) };
    },
    retry,
  );
}

export interface TelemetryQuery extends PageRequest {
  deviceId: string;
  sensor?: string;
  from?: string;
  to?: string;
}

interface TelemetryRowOut {
  id: string;
  sensor_id: string;
  data_type: string;
  timestamp: Date;
  ts_text: string;
  value: number;
  unit: string | null;
  metadata: unknown;
  version: string;
  synced_at: Date;
}

/** The SQL of a telemetry page: one range of idx_device_time, newest first. */
export function telemetryPageSql(): string {
  return `SELECT id, sensor_id, data_type, "timestamp", "timestamp"::text AS ts_text, value, unit, metadata, version, synced_at
            FROM telemetry_data
           WHERE device_id = $1
             AND ($2::text IS NULL OR sensor_id = $2::text)
             AND ($3::timestamptz IS NULL OR "timestamp" >= $3::timestamptz)
             AND ($4::timestamptz IS NULL OR "timestamp" < $4::timestamptz)
             AND ($5::timestamptz IS NULL OR "timestamp" <= $5::timestamptz)
             AND ($5::timestamptz IS NULL OR "timestamp" < $5::timestamptz OR id < $6::uuid)
           ORDER BY "timestamp" DESC, id DESC
           LIMIT $7`;
}

export function telemetryPageValues(query: TelemetryQuery): unknown[] {
  const cursor = query.after === undefined ? null : decodeCursor('telemetry', query.after, 2);
  return [
    query.deviceId,
    query.sensor ?? null,
    query.from ?? null,
    query.to ?? null,
    cursor === null ? null : String(cursor[0]),
    cursor === null ? null : String(cursor[1]),
    query.limit + 1,
  ];
}

export async function queryTelemetry(db: Database, query: TelemetryQuery) {
  const rows = await db.any<TelemetryRowOut>(telemetryPageSql(), telemetryPageValues(query));
  return pageFrom(
    rows,
    query.limit,
    'telemetry',
    (row) => [row.ts_text, row.id],
    (row) => ({
      id: row.id,
      sensorId: row.sensor_id,
      dataType: row.data_type,
      timestamp: row.timestamp.toISOString(),
      value: row.value,
      unit: row.unit,
      metadata: row.metadata,
      version: Number(row.version),
      syncedAt: row.synced_at.toISOString(),
    }),
  );
}

interface ConflictRow {
  conflict_id: string;
  device_id: string;
  record_id: string;
  conflict_type: string;
  local_value: unknown;
  remote_value: unknown;
  resolved_value: unknown;
  resolution_strategy: string | null;
  detected_at: Date;
  detected_text: string;
}

export async function listConflicts(db: Database, query: PageRequest & { deviceId?: string }) {
  const cursor = query.after === undefined ? null : decodeCursor('conflicts', query.after, 2);
  const rows = await db.any<ConflictRow>(
    `SELECT conflict_id, device_id, record_id, conflict_type, local_value, remote_value, resolved_value,
            resolution_strategy, detected_at, detected_at::text AS detected_text
       FROM conflict_log
      WHERE ($1::uuid IS NULL OR device_id = $1::uuid)
        AND ($2::timestamptz IS NULL OR detected_at <= $2::timestamptz)
        AND ($2::timestamptz IS NULL OR detected_at < $2::timestamptz OR conflict_id < $3::uuid)
      ORDER BY detected_at DESC, conflict_id DESC
      LIMIT $4`,
    [
      query.deviceId ?? null,
      cursor === null ? null : String(cursor[0]),
      cursor === null ? null : String(cursor[1]),
      query.limit + 1,
    ],
  );
  return pageFrom(
    rows,
    query.limit,
    'conflicts',
    (row) => [row.detected_text, row.conflict_id],
    (row) => ({
      conflictId: row.conflict_id,
      deviceId: row.device_id,
      recordId: row.record_id,
      conflictType: row.conflict_type,
      localValue: row.local_value,
      remoteValue: row.remote_value,
      resolvedValue: row.resolved_value,
      resolutionStrategy: row.resolution_strategy,
      detectedAt: row.detected_at.toISOString(),
    }),
  );
}
