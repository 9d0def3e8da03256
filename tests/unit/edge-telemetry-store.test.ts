import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import { newId } from '../../common/ids.js';
import { MAX_BATCH_BYTES } from '../../schemas/limits.js';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { openEdgeDatabase } from '../../edge/store/database.js';
import { SCHEMA_VERSION } from '../../edge/store/schema.js';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { maxRowsPerStatement } from '../../edge/store/upsert-statement.js';
import { BASE_TIME_MS, makeRecord, TEST_DEVICE_ID } from '../helpers/records.js';
import { tempTelemetryStore, type TempDatabase } from '../helpers/edge-temp-db.js';

let database: TempDatabase;
let store: TelemetryStore;
let reader: Client;

async function row(id: string): Promise<Record<string, unknown> | undefined> {
  const result = await reader.execute({ sql: 'SELECT * FROM telemetry_data WHERE id = ?', args: [id] });
  return result.rows[0] as Record<string, unknown> | undefined;
}

async function statusOf(ids: string[]): Promise<string[]> {
  return Promise.all(ids.map(async (id) => String((await row(id))?.['sync_status'])));
}

beforeEach(async () => {
  ({ database, store, reader } = await tempTelemetryStore('edge-store'));
});

describe('schema', () => {
  it('creates telemetry_data, device_config, command_queue and sync_log, the protocol columns and rejected_readings, at the current version', async () => {
    const tables = await reader.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    expect(tables.rows.map((r) => r['name'])).toEqual([
      'command_queue',
      'device_config',
      'edge_counters',
      'rejected_readings',
      'sync_log',
      'telemetry_data',
    ]);
    const indexes = await reader.execute(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name",
    );
    expect(indexes.rows.map((r) => r['name'])).toEqual([
      'idx_command_reports',
      'idx_command_status',
      'idx_device_sensor',
      'idx_failed_at',
      'idx_rejected_received',
      'idx_released_batches',
      'idx_sync_batch',
      'idx_sync_log_started',
      'idx_sync_status',
      'idx_synced_at',
    ]);
    const columns = await reader.execute('PRAGMA table_info(telemetry_data)');
    expect(columns.rows.map((r) => r['name'])).toEqual([
      'id',
      'device_id',
      'sensor_id',
      'timestamp',
      'data_type',
      'value',
      'unit',
      'metadata',
      'sync_status',
      'sync_timestamp',
      'version',
      'created_at',
      'sync_batch_id',
      'sync_error',
    ]);
    expect((await reader.execute('PRAGMA user_version')).rows[0]?.['user_version']).toBe(SCHEMA_VERSION);
    expect((await reader.execute('PRAGMA journal_mode')).rows[0]?.['journal_mode']).toBe('wal');
  });

  it('runs on a connection with synchronous=FULL and a busy timeout', async () => {
    const db = await openEdgeDatabase(database.url, { busyTimeoutMs: 1234 });
    const synchronous = await db.exclusive((client) => client.execute('PRAGMA synchronous'));
    const busy = await db.exclusive((client) => client.execute('PRAGMA busy_timeout'));
    await db.close();
    expect(synchronous.rows[0]?.['synchronous']).toBe(2);
    expect(busy.rows[0]?.['timeout']).toBe(1234);
  });

  it('reopens an existing database without changing it (idempotent migrations)', async () => {
    const record = makeRecord();
    await store.insertReadings([record]);
    await store.close();
    store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    expect(await store.countByStatus()).toEqual({ pending: 1, syncing: 0, synced: 0, failed: 0 });
    expect((await reader.execute('PRAGMA user_version')).rows[0]?.['user_version']).toBe(SCHEMA_VERSION);
  });

  it('refuses a database written by a newer schema version', async () => {
    await reader.execute(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    await expect(openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID })).rejects.toThrow(
      `edge database schema version ${SCHEMA_VERSION + 1} is newer than this agent understands (${SCHEMA_VERSION})`,
    );
  });
});

describe('insertReadings', () => {
  it('stores a new reading as version 1, pending, timestamp in epoch ms', async () => {
    const record = makeRecord({ metadata: { b: 1, a: 2 } });
    expect(await store.insertReadings([record])).toEqual({ inserted: 1, corrected: 0, duplicates: 0 });
    expect(await row(record.id)).toMatchObject({
      device_id: TEST_DEVICE_ID,
      sensor_id: 'boiler-1',
      data_type: 'temperature',
      timestamp: BASE_TIME_MS,
      value: 20,
      unit: 'C',
      metadata: '{"a":2,"b":1}',
      sync_status: 'pending',
      version: 1,
      sync_batch_id: null,
    });
  });

  it('ignores a duplicate (same id, same content), even with metadata keys in another order', async () => {
    const record = makeRecord({ metadata: { b: 1, a: 2 } });
    await store.insertReadings([record]);
    const [claimed] = await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    expect(claimed?.id).toBe(record.id);
    expect(await store.insertReadings([{ ...record, metadata: { a: 2, b: 1 } }])).toEqual({
      inserted: 0,
      corrected: 0,
      duplicates: 1,
    });
    expect(await row(record.id)).toMatchObject({ version: 1, sync_status: 'syncing', sync_batch_id: 'batch-1' });
  });

  it("keeps a metadata key named '__proto__' like any other key", async () => {
    const record = makeRecord({ metadata: JSON.parse('{"__proto__": {"x": 1}, "a": 2}') as Record<string, unknown> });
    await store.insertReadings([record]);
    expect((await row(record.id))?.['metadata']).toBe('{"__proto__":{"x":1},"a":2}');
  });

  it('treats other content under the same id as a correction: version + 1, pending, out of its batch', async () => {
    const record = makeRecord();
    await store.insertReadings([record]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    await store.applyAck({ batchId: 'batch-1', accepted: 1, rejected: [], conflicts: 0 }, 42);
    expect(await row(record.id)).toMatchObject({ sync_status: 'synced', sync_timestamp: 42 });

    expect(await store.insertReadings([{ ...record, value: 21 }])).toEqual({
      inserted: 0,
      corrected: 1,
      duplicates: 0,
    });
    expect(await row(record.id)).toMatchObject({
      value: 21,
      version: 2,
      sync_status: 'pending',
      sync_batch_id: null,
      sync_timestamp: null,
    });
    expect(await store.insertReadings([{ ...record, unit: null, value: 21 }])).toEqual({
      inserted: 0,
      corrected: 1,
      duplicates: 0,
    });
    expect(await row(record.id)).toMatchObject({ unit: null, version: 3 });
  });

  it('splits a group beyond the bound-parameter limit into statements of one transaction', async () => {
    const count = maxRowsPerStatement() * 2 + 10;
    const records = Array.from({ length: count }, (_, index) => makeRecord({ atMs: BASE_TIME_MS + index }));
    expect(await store.insertReadings(records)).toEqual({ inserted: count, corrected: 0, duplicates: 0 });
    expect((await store.countByStatus()).pending).toBe(count);
  });

  it('commits nothing of a group when any of its statements fails', async () => {
    const records = Array.from({ length: maxRowsPerStatement() + 5 }, () => makeRecord());
    const broken = { ...makeRecord(), sensorId: undefined } as unknown as TelemetryRecord; // lands in the second statement
    await expect(store.insertReadings([...records, broken])).rejects.toThrow(/undefined cannot be passed/);
    expect(await store.countByStatus()).toEqual({ pending: 0, syncing: 0, synced: 0, failed: 0 });
  });
});

describe('claimPendingBatch', () => {
  it('claims the oldest pending readings by timestamp, then arrival order, and returns them as wire records', async () => {
    // the tie is broken by arrival (rowid), not by id: idB arrives first
    const idA = '00000000-0000-4000-8000-00000000000a';
    const idB = '00000000-0000-4000-8000-00000000000b';
    const newest = makeRecord({ atMs: BASE_TIME_MS + 3000, metadata: { n: 1 } });
    const oldest = makeRecord({ atMs: BASE_TIME_MS });
    const tieB = makeRecord({ id: idB, atMs: BASE_TIME_MS + 1000 });
    const tieA = makeRecord({ id: idA, atMs: BASE_TIME_MS + 1000 });
    await store.insertReadings([newest, tieB, oldest, tieA]);

    const first = await store.claimPendingBatch(3, MAX_BATCH_BYTES, 'batch-1');
    expect(first).toEqual([oldest, tieB, tieA]);
    expect(await statusOf([oldest.id, tieB.id, tieA.id, newest.id])).toEqual([
      'syncing',
      'syncing',
      'syncing',
      'pending',
    ]);
    expect((await row(oldest.id))?.['sync_batch_id']).toBe('batch-1');

    expect(await store.claimPendingBatch(3, MAX_BATCH_BYTES, 'batch-2')).toEqual([newest]);
    expect(await store.claimPendingBatch(3, MAX_BATCH_BYTES, 'batch-3')).toEqual([]);
  });

  it('respects the byte limit', async () => {
    const records = Array.from({ length: 10 }, (_, index) =>
      makeRecord({ atMs: BASE_TIME_MS + index, metadata: { pad: 'x'.repeat(400) } }),
    );
    await store.insertReadings(records);
    const claimed = await store.claimPendingBatch(100, 1500, newId());
    expect(claimed.length).toBeGreaterThan(0);
    expect(claimed.length).toBeLessThan(10);
    expect(
      Buffer.byteLength(JSON.stringify({ batchId: newId(), records: claimed, pendingCount: 10 })),
    ).toBeLessThanOrEqual(1500);
  });

  it('marks a reading that can never fit a batch failed and claims the ones behind it', async () => {
    const huge = makeRecord({ atMs: BASE_TIME_MS, metadata: { pad: 'x'.repeat(2000) } });
    const normal = makeRecord({ atMs: BASE_TIME_MS + 1 });
    await store.insertReadings([huge, normal]);
    expect(await store.claimPendingBatch(100, 1000, 'batch-1')).toEqual([normal]);
    expect(await row(huge.id)).toMatchObject({ sync_status: 'failed' });
    expect(String((await row(huge.id))?.['sync_error'])).toMatch(
      /no telemetry batch of at most 1000 bytes can carry it/,
    );
  });
});

describe('applyAck, releaseBatch, releaseAllSyncing', () => {
  it('marks the batch synced and the rejected readings failed with the reason', async () => {
    const [a, b, c] = [
      makeRecord({ atMs: BASE_TIME_MS }),
      makeRecord({ atMs: BASE_TIME_MS + 1 }),
      makeRecord({ atMs: BASE_TIME_MS + 2 }),
    ] as [TelemetryRecord, TelemetryRecord, TelemetryRecord];
    await store.insertReadings([a, b, c]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    const outcome = await store.applyAck(
      { batchId: 'batch-1', accepted: 2, rejected: [{ id: b.id, reason: 'value out of range' }], conflicts: 0 },
      777,
    );
    expect(outcome).toEqual({ synced: 2, failed: 1 });
    expect(await row(a.id)).toMatchObject({ sync_status: 'synced', sync_timestamp: 777 });
    expect(await row(b.id)).toMatchObject({ sync_status: 'failed', sync_error: 'value out of range' });
    expect(await row(c.id)).toMatchObject({ sync_status: 'synced' });
  });

  it('confirms nothing for a "retry later" ack, also while storage is short: the batch is pending again under its id', async () => {
    const records = [makeRecord({ atMs: BASE_TIME_MS }), makeRecord({ atMs: BASE_TIME_MS + 1 })];
    await store.insertReadings(records);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    const outcome = await store.applyAck(
      { batchId: 'batch-1', accepted: 0, rejected: [], conflicts: 0, retryAfterMs: 1000 },
      777,
      { deleteSynced: true, log: { startedAtMs: 1, evenIfNothingMatched: true } },
    );
    expect(outcome).toEqual({ synced: 0, failed: 0, released: 2 });
    expect(await store.countByStatus()).toEqual({ pending: 2, syncing: 0, synced: 0, failed: 0 });
    expect((await reader.execute('SELECT count(*) AS n FROM sync_log')).rows[0]?.['n']).toBe(0);
    const again = await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-2');
    expect(again.batchId).toBe('batch-1');
    expect(again.records.map((r) => r.id)).toEqual(records.map((r) => r.id));
  });

  it('marks the listed rejections failed and sends the rest again when the ack counts more rejections than it lists', async () => {
    const records = Array.from({ length: 5 }, (_, i) => makeRecord({ atMs: BASE_TIME_MS + i }));
    const [a, b] = records as [TelemetryRecord, TelemetryRecord];
    await store.insertReadings(records);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    // 3 of 5 rejected, only a and b named: which of the other three was the third is unknown
    const outcome = await store.applyAck(
      {
        batchId: 'batch-1',
        accepted: 2,
        rejected: [
          { id: a.id, reason: 'bad a' },
          { id: b.id, reason: 'bad b' },
        ],
        rejectedCount: 3,
        conflicts: 0,
      },
      777,
      { deleteSynced: true, log: { startedAtMs: 1, evenIfNothingMatched: true } },
    );
    expect(outcome).toEqual({ synced: 0, failed: 2, released: 3 });
    expect(await statusOf(records.map((r) => r.id))).toEqual(['failed', 'failed', 'pending', 'pending', 'pending']);
    const log = await reader.execute('SELECT status, error_message FROM sync_log');
    expect(log.rows[0]).toMatchObject({
      status: 'partial',
      error_message: expect.stringMatching(/^3 rejected .*1 not named/),
    });
    const again = await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-2');
    expect(again.batchId).toBe('batch-1');
    expect(again.records.map((r) => r.id)).toEqual(records.slice(2).map((r) => r.id));
    // the next ack names the last one: the rest is confirmed
    const c = records[2] as TelemetryRecord;
    expect(
      await store.applyAck({
        batchId: 'batch-1',
        accepted: 2,
        rejected: [{ id: c.id, reason: 'bad c' }],
        conflicts: 0,
      }),
    ).toEqual({ synced: 2, failed: 1 });
    expect(await statusOf(records.map((r) => r.id))).toEqual(['failed', 'failed', 'failed', 'synced', 'synced']);
  });

  it('does not mark a reading corrected after it was sent: its new content has not been acknowledged', async () => {
    const kept = makeRecord({ atMs: BASE_TIME_MS });
    const corrected = makeRecord({ atMs: BASE_TIME_MS + 1 });
    await store.insertReadings([kept, corrected]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    await store.insertReadings([{ ...corrected, value: 99 }]);
    expect(await store.applyAck({ batchId: 'batch-1', accepted: 2, rejected: [], conflicts: 0 })).toEqual({
      synced: 1,
      failed: 0,
    });
    expect(await row(kept.id)).toMatchObject({ sync_status: 'synced' });
    expect(await row(corrected.id)).toMatchObject({ sync_status: 'pending', version: 2, value: 99 });
    const [resent] = await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-2');
    expect(resent).toMatchObject({ id: corrected.id, value: 99, version: 2 });
  });

  it('changes nothing for an ack of an unknown batch or without a batch id', async () => {
    await store.insertReadings([makeRecord()]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    expect(await store.applyAck({ batchId: 'no-such-batch', accepted: 1, rejected: [], conflicts: 0 })).toEqual({
      synced: 0,
      failed: 0,
    });
    expect(
      await store.applyAck({ batchId: null, accepted: 0, rejected: [], conflicts: 0, error: 'unreadable' }),
    ).toEqual({ synced: 0, failed: 0 });
    expect(await store.countByStatus()).toEqual({ pending: 0, syncing: 1, synced: 0, failed: 0 });
  });

  it('releases a timed-out batch to pending; it is claimed again, and a late ack for it still confirms it', async () => {
    const record = makeRecord();
    await store.insertReadings([record]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    expect(await store.releaseBatch('batch-1')).toBe(1);
    expect(await row(record.id)).toMatchObject({ sync_status: 'pending' });
    expect(await store.releaseBatch('batch-1')).toBe(0);

    expect(await store.applyAck({ batchId: 'batch-1', accepted: 1, rejected: [], conflicts: 0 })).toEqual({
      synced: 1,
      failed: 0,
    });
    expect(await row(record.id)).toMatchObject({ sync_status: 'synced' });
  });

  it('a late ack of an old batch does not touch a reading claimed into a newer batch', async () => {
    const record = makeRecord();
    await store.insertReadings([record]);
    await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-1');
    await store.releaseBatch('batch-1');
    expect(await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-2')).toHaveLength(1);
    expect(await store.applyAck({ batchId: 'batch-1', accepted: 1, rejected: [], conflicts: 0 })).toEqual({
      synced: 0,
      failed: 0,
    });
    expect(await row(record.id)).toMatchObject({ sync_status: 'syncing', sync_batch_id: 'batch-2' });
  });

  it('claims a released batch again under its own id before new readings, without readings corrected since', async () => {
    const [kept, corrected] = [makeRecord({ atMs: BASE_TIME_MS + 10 }), makeRecord({ atMs: BASE_TIME_MS + 11 })] as [
      TelemetryRecord,
      TelemetryRecord,
    ];
    await store.insertReadings([corrected, kept]);
    expect(await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-1')).toEqual({
      batchId: 'batch-1',
      records: [kept, corrected],
    });
    await store.releaseBatch('batch-1'); // ack timeout
    expect(await store.countByStatus()).toMatchObject({ pending: 2, syncing: 0 });
    await store.insertReadings([{ ...corrected, value: 99 }]); // corrected meanwhile: a new reading version
    const older = makeRecord({ atMs: BASE_TIME_MS }); // arrives later, stamped earlier than the batch
    await store.insertReadings([older]);

    expect(await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-2')).toEqual({ batchId: 'batch-1', records: [kept] });
    const next = await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-3');
    expect(next.batchId).toBe('batch-3');
    expect(next.records.map((record) => record.id)).toEqual([older.id, corrected.id]);
    expect(await store.claimNextBatch(10, MAX_BATCH_BYTES, 'batch-4')).toEqual({ batchId: 'batch-4', records: [] });

    // the late ack of the first send confirms the re-sent batch
    expect(await store.applyAck({ batchId: 'batch-1', accepted: 2, rejected: [], conflicts: 0 })).toEqual({
      synced: 1,
      failed: 0,
    });
  });

  it('claims batches released at a restart again under their own ids', async () => {
    const records = Array.from({ length: 3 }, (_, index) => makeRecord({ atMs: BASE_TIME_MS + index }));
    await store.insertReadings(records);
    await store.claimNextBatch(2, MAX_BATCH_BYTES, 'batch-1');
    await store.claimNextBatch(2, MAX_BATCH_BYTES, 'batch-2');
    await store.releaseAllSyncing();
    expect((await store.claimNextBatch(2, MAX_BATCH_BYTES, 'new-1')).batchId).toBe('batch-1');
    expect((await store.claimNextBatch(2, MAX_BATCH_BYTES, 'new-2')).batchId).toBe('batch-2');
  });

  it('sends readings of a released batch that no longer fits the limits in a new batch', async () => {
    const records = Array.from({ length: 4 }, (_, index) => makeRecord({ atMs: BASE_TIME_MS + index }));
    await store.insertReadings(records);
    await store.claimNextBatch(4, MAX_BATCH_BYTES, 'batch-1');
    await store.releaseBatch('batch-1');
    expect(await store.claimNextBatch(3, MAX_BATCH_BYTES, 'new-1')).toEqual({
      batchId: 'batch-1',
      records: records.slice(0, 3),
    });
    expect(await store.claimNextBatch(3, MAX_BATCH_BYTES, 'new-2')).toEqual({
      batchId: 'new-2',
      records: records.slice(3),
    });
  });

  it("puts every 'syncing' row back to pending after a restart", async () => {
    const records = Array.from({ length: 5 }, (_, index) => makeRecord({ atMs: BASE_TIME_MS + index }));
    await store.insertReadings(records);
    await store.claimPendingBatch(2, MAX_BATCH_BYTES, 'batch-1');
    await store.claimPendingBatch(2, MAX_BATCH_BYTES, 'batch-2');
    await store.close();

    store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    expect(await store.countByStatus()).toEqual({ pending: 1, syncing: 4, synced: 0, failed: 0 });
    expect(await store.releaseAllSyncing()).toBe(4);
    expect(await store.countByStatus()).toEqual({ pending: 5, syncing: 0, synced: 0, failed: 0 });
    expect((await store.claimPendingBatch(10, MAX_BATCH_BYTES, 'batch-3')).map((r) => r.id)).toEqual(
      records.map((r) => r.id),
    );
  });
});

describe('sync_log and rejected_readings', () => {
  it('writes sync log entries', async () => {
    const id = await store.writeSyncLog({
      syncType: 'upstream',
      startedAt: 10,
      completedAt: 20,
      recordsCount: 3,
      status: 'partial',
      errorMessage: '1 rejected',
    });
    const entry = (await reader.execute({ sql: 'SELECT * FROM sync_log WHERE id = ?', args: [id] })).rows[0];
    expect(entry).toMatchObject({
      sync_type: 'upstream',
      started_at: 10,
      completed_at: 20,
      records_count: 3,
      status: 'partial',
      error_message: '1 rejected',
    });
  });

  it('keeps refused payloads as text with the reason', async () => {
    await store.recordRejectedReading({
      receivedAt: 5,
      topic: 'sensors/a/b',
      payload: Buffer.from('{oops'),
      reason: 'payload is not valid JSON',
    });
    expect(await store.countRejectedReadings()).toBe(1);
    const entry = (await reader.execute('SELECT * FROM rejected_readings')).rows[0];
    expect(entry).toMatchObject({
      received_at: 5,
      topic: 'sensors/a/b',
      payload: '{oops',
      reason: 'payload is not valid JSON',
    });
  });
});
