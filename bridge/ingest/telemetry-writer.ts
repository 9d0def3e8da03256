/**
 * Writes one database batch of telemetry in ONE serializable transaction (retried whole on
 * 40001/40P01 by runSerializable):
 *   1. upsert the devices (auto-registration: the broker proved each device's identity with its
 *      client certificate; devices go first because of the foreign keys),
 *   2. insert the readings the batch would write if nothing were stored (the in-batch winners,
 *      conflict-resolution.ts), each unless its (device_id, id) exists: INSERT … ON CONFLICT
 *      (device_id, id) DO NOTHING RETURNING id,
 *   3. only for the readings that were there already (a re-sent batch, a newer version): read their
 *      stored rows per device through (device_id, id), resolve (pure, conflict-resolution.ts) and
 *      upsert the winners (INSERT … ON CONFLICT DO UPDATE … WHERE guard),
 *   4. insert conflict_log entries,
 *   5. upsert sync_status per device.
 * Every multi-row INSERT is split into statements of at most 500 rows and 4 MiB of SQL text
 * (bridge/db/multi-row-insert.ts: CockroachDB refuses client messages over 16 MiB), all of them in
 * this one transaction.
 * Portable SQL only (CockroachDB and PostgreSQL): no LISTEN/NOTIFY, advisory locks, temp tables,
 * triggers or cursors. Rows are written in key order so concurrent writers lock in one order.
 *
 * G7: a device's transaction reads only index pages of its own rows. Steps 2 and 3 go through the
 * unique index (device_id, id) (migration 004), not through the primary key (id): PostgreSQL 17's
 * serializable isolation records reads as page-level predicate locks, and 1000 random UUIDs read
 * by id cover nearly every leaf page of the primary key, so a large batch conflicted with every
 * small batch of any other device written beside it and was cancelled (40001) again and again
 * (bridge-writer-isolation.test.ts holds both paths open side by side). Inserting first also spares
 * the lookup of readings that are new, nearly all of them, and one lookup branch per device in a
 * batch of many devices (PostgreSQL planned 500 branches in 160 ms).
 * The primary key still makes a record id belong to one device: when an insert meets another
 * device's row with the same id (23505 on the primary key; on PostgreSQL also when two bridges
 * insert the same new reading of one device at once), the batch is written again on the
 * id-wide path (`scope: 'record-id'`: read every id through the primary key, resolve, upsert),
 * which finds that row and rejects the reading (RECORD_OF_ANOTHER_DEVICE), as before.
 */
import type { RejectedRecord } from '../../schemas/messages.js';
import { pgp, type Database, type Task } from '../db/connection.js';
import { multiRowInsertStatements } from '../db/multi-row-insert.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import {
  resolveBatch,
  type BatchResolution,
  type ConflictLogEntry,
  type MessageOutcome,
} from './conflict-resolution.js';
import type { TelemetryRow } from './telemetry-row.js';

export interface TelemetryWriteMessage {
  deviceId: string;
  /** the message's valid records */
  records: readonly TelemetryRow[];
  /** records rejected before SQL (validation); reported in sync_status and the outcome */
  invalid: readonly RejectedRecord[];
  /** readings still waiting on the device (the envelope's pendingCount), if it said */
  pendingCount: number | null;
  /** G8: pending readings the device dropped to make room (the envelope's droppedCount, a total), if it said */
  droppedCount?: number | null;
}

export interface TelemetryWriteResult {
  /** one per message, same order; `rejected` includes the message's `invalid` records */
  outcomes: MessageOutcome[];
  upserted: number;
  conflictsLogged: number;
}

/** A row the pure resolution chose was not written: a concurrent writer got there first. */
export class UpsertGuardError extends Error {
  override name = 'UpsertGuardError';
  /** handled like a serialization failure: the whole transaction is retried */
  readonly code = '40001';
}

const { ColumnSet } = pgp.helpers;

const NOW = { name: 'now', mod: '^' as const, init: () => 'now()' };

const deviceColumns = new ColumnSet<{ deviceId: string }>(
  [
    { name: 'device_id', prop: 'deviceId', cast: 'uuid' },
    { name: 'device_name', prop: 'deviceId' },
    { name: 'device_type', init: () => 'edge' },
    { ...NOW, name: 'last_seen_at' },
  ],
  { table: 'devices' },
);

/** exported for the test that telemetryTuple writes what pg-promise would */
export const telemetryColumns = new ColumnSet<TelemetryRow>(
  [
    { name: 'id', cast: 'uuid' },
    { name: 'device_id', prop: 'deviceId', cast: 'uuid' },
    { name: 'sensor_id', prop: 'sensorId' },
    { name: 'timestamp', cast: 'timestamptz' },
    { name: 'data_type', prop: 'dataType' },
    { name: 'value', cast: 'float8' },
    { name: 'unit' },
    { name: 'metadata', mod: ':json', cast: 'jsonb' },
    { name: 'version', cast: 'int8' },
    {
      name: 'content_hash',
      prop: 'contentHash',
      init: (column) => Buffer.from(String(column.value), 'hex'),
      cast: 'bytea',
    },
  ],
  { table: 'telemetry_data' },
);

const conflictColumns = new ColumnSet<ConflictLogEntry>(
  [
    { name: 'conflict_id', prop: 'conflictId', cast: 'uuid' },
    { name: 'device_id', prop: 'deviceId', cast: 'uuid' },
    { name: 'record_id', prop: 'recordId' },
    { name: 'conflict_type', prop: 'conflictType' },
    { name: 'local_value', prop: 'localValue', mod: ':json', cast: 'jsonb' },
    { name: 'remote_value', prop: 'remoteValue', mod: ':json', cast: 'jsonb' },
    { name: 'resolved_value', prop: 'resolvedValue', mod: ':json', cast: 'jsonb' },
    { name: 'resolution_strategy', prop: 'resolutionStrategy' },
  ],
  { table: 'conflict_log' },
);

interface SyncStatusRow {
  deviceId: string;
  status: 'success' | 'partial' | 'failed';
  pendingCount: number | null;
  droppedCount: number;
  inserted: number;
  lastError: string | null;
}

const syncStatusColumns = new ColumnSet<SyncStatusRow>(
  [
    { name: 'device_id', prop: 'deviceId', cast: 'uuid' },
    { ...NOW, name: 'last_sync_at' },
    { name: 'last_sync_status', prop: 'status' },
    { name: 'pending_records_count', prop: 'pendingCount', cast: 'int8' },
    { name: 'dropped_records_count', prop: 'droppedCount', cast: 'int8' },
    { name: 'total_synced_records', prop: 'inserted', cast: 'int8' },
    { name: 'last_error', prop: 'lastError' },
    { ...NOW, name: 'updated_at' },
  ],
  { table: 'sync_status' },
);

const UPSERT_DEVICES = ' ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at';

// G4: the database repeats the rule, so a concurrent writer can never make a losing row win
const upsertTelemetry = (arbiter: string): string =>
  ` ON CONFLICT (${arbiter}) DO UPDATE SET ` +
  telemetryColumns.assignColumns({ from: 'excluded', skip: ['id', 'device_id'] }) +
  ', synced_at = now()' +
  // the same rule as conflict-resolution.ts `decide`: higher version, or same version and larger hash
  ' WHERE telemetry_data.device_id = excluded.device_id AND (telemetry_data.version < excluded.version' +
  ' OR (telemetry_data.version = excluded.version AND telemetry_data.content_hash < excluded.content_hash))' +
  ' RETURNING id';
const UPSERT_TELEMETRY_BY_DEVICE = upsertTelemetry('device_id, id');
// G7: the device path's first statement: new readings only, each checked in its device's index range
const INSERT_TELEMETRY_NEW = ' ON CONFLICT (device_id, id) DO NOTHING RETURNING id';
const UPSERT_TELEMETRY_BY_ID = upsertTelemetry('id');

// G4: conflict ids are name-based, so a redelivered conflict is logged once
const INSERT_CONFLICTS = ' ON CONFLICT (conflict_id) DO NOTHING';

const UPSERT_SYNC_STATUS =
  ' ON CONFLICT (device_id) DO UPDATE SET last_sync_at = excluded.last_sync_at,' +
  ' last_sync_status = excluded.last_sync_status,' +
  ' pending_records_count = COALESCE(excluded.pending_records_count, sync_status.pending_records_count),' +
  // G8: a total that only grows; a re-sent or reordered batch carries an older, smaller one
  ' dropped_records_count = GREATEST(excluded.dropped_records_count, COALESCE(sync_status.dropped_records_count, 0)),' +
  ' total_synced_records = COALESCE(sync_status.total_synced_records, 0) + excluded.total_synced_records,' +
  ' last_error = excluded.last_error, updated_at = excluded.updated_at';

const STORED_COLUMNS = 'id, device_id, sensor_id, data_type, "timestamp", value, unit, metadata, version, content_hash';
const SELECT_STORED_BY_ID = `SELECT ${STORED_COLUMNS} FROM telemetry_data WHERE id = ANY($1::uuid[])`;
const SELECT_STORED_OF_DEVICE = `SELECT ${STORED_COLUMNS} FROM telemetry_data WHERE device_id = $1::uuid AND id = ANY($2::uuid[])`;

/**
 * Which index a batch reads and upserts through: 'device' = (device_id, id), each device's rows
 * only (the normal path); 'record-id' = the primary key (id), which also finds another device's row
 * with the same id (the fallback after a 23505).
 */
export type TelemetryWriteScope = 'device' | 'record-id';

interface StoredRow {
  id: string;
  device_id: string;
  sensor_id: string;
  data_type: string;
  timestamp: Date;
  value: number;
  unit: string | null;
  metadata: Record<string, unknown> | null;
  /** BIGINT: node-postgres returns int8 as a string */
  version: string;
  content_hash: Buffer;
}

export async function writeTelemetryBatch(
  db: Database,
  messages: readonly TelemetryWriteMessage[],
  options: { retry?: TransactionRetryOptions; scope?: TelemetryWriteScope } = {},
): Promise<TelemetryWriteResult> {
  const scope = options.scope ?? 'device';
  try {
    return await runSerializable(
      db,
      'telemetry-batch',
      (t) => writeTelemetryInTransaction(t, messages, scope),
      options.retry,
    );
  } catch (error) {
    if (scope === 'device' && isUniqueViolation(error)) {
      // another device owns one of these ids (or a concurrent insert of the same reading won): the
      // id-wide path finds that row and rejects the reading, or resolves it as a duplicate
      return runSerializable(
        db,
        'telemetry-batch',
        (t) => writeTelemetryInTransaction(t, messages, 'record-id'),
        options.retry,
      );
    }
    throw error;
  }
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

/** The query for the stored rows of the batch's ids: per device through (device_id, id), or by id alone. */
export function storedRowsQuery(messages: readonly TelemetryWriteMessage[], scope: TelemetryWriteScope): string | null {
  if (scope === 'record-id') {
    const ids = [...new Set(messages.flatMap((message) => message.records.map((record) => record.id)))];
    return ids.length === 0 ? null : pgp.as.format(SELECT_STORED_BY_ID, [ids]);
  }
  const idsByDevice = new Map<string, Set<string>>();
  for (const message of messages) {
    if (message.records.length === 0) continue;
    const ids = idsByDevice.get(message.deviceId) ?? new Set<string>();
    for (const record of message.records) ids.add(record.id);
    idsByDevice.set(message.deviceId, ids);
  }
  if (idsByDevice.size === 0) return null;
  // one statement, one round trip: a branch per device, each an index range of that device only
  return [...idsByDevice.entries()]
    .map(([deviceId, ids]) => pgp.as.format(SELECT_STORED_OF_DEVICE, [deviceId, [...ids]]))
    .join(' UNION ALL ');
}

/**
 * The body of writeTelemetryBatch's transaction, for a caller that runs the transaction itself
 * (the isolation test holds two of them open at once). No retry, no fallback on 23505.
 */
export async function writeTelemetryInTransaction(
  t: Task,
  messages: readonly TelemetryWriteMessage[],
  scope: TelemetryWriteScope,
): Promise<TelemetryWriteResult> {
  await upsertDevices(t, messages);
  const { resolution, upserted } =
    scope === 'device' ? await insertThenResolve(t, messages) : await resolveThenUpsert(t, messages);
  const outcomes = resolution.messages.map((outcome, index) => ({
    ...outcome,
    rejected: [...(messages[index]?.invalid ?? []), ...outcome.rejected],
  }));

  const conflicts = uniqueBy(resolution.conflicts, (entry) => entry.conflictId);
  for (const sql of multiRowInsertStatements(conflicts, conflictColumns, INSERT_CONFLICTS)) await t.none(sql);

  const statuses = syncStatusRows(messages, outcomes);
  for (const sql of multiRowInsertStatements(statuses, syncStatusColumns, UPSERT_SYNC_STATUS)) await t.none(sql);

  return { outcomes, upserted, conflictsLogged: conflicts.length };
}

/** Auto-registration (the broker proved each device's identity); first, for the foreign keys. */
async function upsertDevices(t: Task, messages: readonly TelemetryWriteMessage[]): Promise<void> {
  const deviceIds = [...new Set(messages.map((message) => message.deviceId))].sort();
  for (const sql of multiRowInsertStatements(
    deviceIds.map((deviceId) => ({ deviceId })),
    deviceColumns,
    UPSERT_DEVICES,
  ))
    await t.none(sql);
}

/**
 * The device path (G7). Most readings are new: each one the batch would write if nothing were
 * stored is inserted unless its (device_id, id) exists, which reads only the device's own pages of
 * that index (the ON CONFLICT arbiter), whatever the number of devices in the batch, and needs no
 * lookup first. Only the readings that were already there (a re-sent batch, a newer version) are
 * then read, per device through (device_id, id), resolved against what is stored, and upserted
 * under the guard. A reading whose id another device owns fails the insert with 23505 on the
 * primary key (writeTelemetryBatch then takes the id-wide path).
 */
async function insertThenResolve(
  t: Task,
  messages: readonly TelemetryWriteMessage[],
): Promise<{ resolution: BatchResolution; upserted: number }> {
  const fresh = resolveBatch(messages, new Map());
  const candidates = [...fresh.upserts].sort(byId);
  const inserted = new Set<string>();
  for (const sql of multiRowInsertStatements(
    candidates,
    telemetryColumns,
    INSERT_TELEMETRY_NEW,
    undefined,
    telemetryTuple,
  ))
    for (const row of await t.any<{ id: string }>(sql)) inserted.add(row.id);
  const existing = new Set(candidates.filter((row) => !inserted.has(row.id)).map((row) => row.id));
  if (existing.size === 0) return { resolution: fresh, upserted: inserted.size };

  // the stored versions of the readings that were there before this transaction, and only those
  const select = storedRowsQuery(
    messages.map((message) => ({ ...message, records: message.records.filter((record) => existing.has(record.id)) })),
    'device',
  );
  const stored = select === null ? [] : await t.any<StoredRow>(select);
  const resolution = resolveBatch(messages, new Map(stored.map((row) => [row.id, rowFromDatabase(row)])));
  // a reading inserted above resolves the same way again (nothing was stored for it): written already
  const upserts = resolution.upserts.filter((row) => !inserted.has(row.id)).sort(byId);
  await upsertGuarded(t, upserts, 'device');
  return { resolution, upserted: inserted.size + upserts.length };
}

/** The id-wide path: read every id through the primary key, resolve, upsert under the guard. */
async function resolveThenUpsert(
  t: Task,
  messages: readonly TelemetryWriteMessage[],
): Promise<{ resolution: BatchResolution; upserted: number }> {
  const select = storedRowsQuery(messages, 'record-id');
  const stored = select === null ? [] : await t.any<StoredRow>(select);
  const resolution = resolveBatch(messages, new Map(stored.map((row) => [row.id, rowFromDatabase(row)])));
  const upserts = [...resolution.upserts].sort(byId);
  await upsertGuarded(t, upserts, 'record-id');
  return { resolution, upserted: upserts.length };
}

/** The guarded upserts; every row must be written, or a concurrent writer got there first (retry). */
async function upsertGuarded(t: Task, upserts: readonly TelemetryRow[], scope: TelemetryWriteScope): Promise<void> {
  const written: string[] = []; // RETURNING id of every chunk, checked once all chunks ran
  for (const sql of telemetryUpsertStatements(upserts, scope))
    written.push(...(await t.any<{ id: string }>(sql)).map((row) => row.id));
  if (written.length !== upserts.length) {
    throw new UpsertGuardError(
      `upsert guard skipped ${upserts.length - written.length} of ${upserts.length} rows changed concurrently; restart transaction`,
    );
  }
}

/**
 * The multi-row upserts of readings (one statement per chunk). Their WHERE guard applies a row only
 * if it wins by the pure rule (same device, higher version, or same version and larger content
 * hash; bytea compares bytewise like the hex strings in JS). RETURNING lists the rows actually
 * written.
 */
export function telemetryUpsertStatements(
  rows: readonly TelemetryRow[],
  scope: TelemetryWriteScope = 'device',
): Iterable<string> {
  // lazily: each chunk of up to 500 rows is formatted only when the previous one has run (G7)
  return multiRowInsertStatements(
    rows,
    telemetryColumns,
    scope === 'device' ? UPSERT_TELEMETRY_BY_DEVICE : UPSERT_TELEMETRY_BY_ID,
    undefined,
    telemetryTuple,
  );
}

const { as } = pgp;

/**
 * One reading's VALUES tuple: the same text as pgp.helpers.values(row, telemetryColumns) (a test
 * compares them), written directly. G7: pg-promise's generic ColumnSet formatting cost 15–20 ms per
 * 500 readings on the bridge's event loop, most of a flooding device's batch; this is several
 * times cheaper. The hash is hex from our own SHA-256 (telemetry-row.ts), so it goes in as is.
 */
export function telemetryTuple(row: TelemetryRow): string {
  return preformatted.get(row) ?? formatTuple(row);
}

/** Tuples a parse worker wrote for rows (parse-pool.ts), looked up by the row object itself. */
const preformatted = new WeakMap<TelemetryRow, string>();

/**
 * Keeps the tuples a parse worker wrote for these rows (same order), so telemetryTuple does not
 * format them again on the event loop. A row is never changed after it is parsed.
 */
export function rememberTuples(rows: readonly TelemetryRow[], tuples: readonly string[]): void {
  rows.forEach((row, index) => {
    const tuple = tuples[index];
    if (tuple !== undefined) preformatted.set(row, tuple);
  });
}

function formatTuple(row: TelemetryRow): string {
  return (
    `(${as.text(row.id)}::uuid,${as.text(row.deviceId)}::uuid,${as.text(row.sensorId)},${as.text(row.timestamp)}::timestamptz,` +
    `${as.text(row.dataType)},${as.number(row.value)}::float8,${as.text(row.unit)},${as.json(row.metadata)}::jsonb,` +
    `${as.number(row.version)}::int8,'\\x${row.contentHash}'::bytea)`
  );
}

/** One sync_status row per device: the batch's totals, the device's latest pendingCount. */
function syncStatusRows(
  messages: readonly TelemetryWriteMessage[],
  outcomes: readonly MessageOutcome[],
): SyncStatusRow[] {
  const byDevice = new Map<
    string,
    {
      accepted: number;
      rejected: RejectedRecord[];
      inserted: number;
      pendingCount: number | null;
      droppedCount: number;
    }
  >();
  messages.forEach((message, index) => {
    const outcome = outcomes[index] as MessageOutcome;
    const totals = byDevice.get(message.deviceId) ?? {
      accepted: 0,
      rejected: [],
      inserted: 0,
      pendingCount: null,
      droppedCount: 0,
    };
    totals.droppedCount = Math.max(totals.droppedCount, message.droppedCount ?? 0);
    totals.accepted += outcome.accepted;
    totals.rejected.push(...outcome.rejected);
    totals.inserted += outcome.inserted;
    totals.pendingCount = message.pendingCount ?? totals.pendingCount;
    byDevice.set(message.deviceId, totals);
  });
  return [...byDevice.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([deviceId, totals]) => {
      const first = totals.rejected[0];
      return {
        deviceId,
        status: totals.rejected.length === 0 ? 'success' : totals.accepted > 0 ? 'partial' : 'failed',
        pendingCount: totals.pendingCount,
        droppedCount: totals.droppedCount,
        inserted: totals.inserted,
        lastError:
          first === undefined
            ? null
            : withoutNul(`${totals.rejected.length} record(s) rejected, e.g. ${first.id}: ${first.reason}`),
      };
    });
}

/**
 * A rejected record's id and reason echo the device's input, which may hold U+0000: PostgreSQL
 * text refuses it, and inside the SQL text (pg-promise formats values inline) it even breaks the
 * protocol (08P01), which is no data error, so the message would block the pipeline.
 */
function withoutNul(text: string): string {
  return text.replaceAll('\u0000', '\ufffd');
}

function rowFromDatabase(row: StoredRow): TelemetryRow {
  return {
    id: row.id,
    deviceId: row.device_id,
    sensorId: row.sensor_id,
    dataType: row.data_type,
    timestamp: row.timestamp.toISOString(),
    value: row.value,
    unit: row.unit,
    metadata: row.metadata,
    // BIGINT (int8) arrives as a string; versions are at most 2^31 - 1 (the record schema), exact in a number
    version: Number(row.version),
    contentHash: row.content_hash.toString('hex'),
  };
}

function byId(a: TelemetryRow, b: TelemetryRow): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function uniqueBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(key(item))) seen.set(key(item), item);
  return [...seen.values()];
}
