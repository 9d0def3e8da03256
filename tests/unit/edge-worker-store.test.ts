/**
 * The worker-backed store: the same operations as the in-thread store, answered from a worker
 * thread that owns the libSQL connection; SQLite's time is not spent on the caller's event loop;
 * errors keep their SQLite code; close() is idempotent.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { fillEdgeBacklog } from '../../devtools/edge-backlog.js';
import { MAX_BATCH_BYTES } from '../../schemas/limits.js';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { openWorkerTelemetryStore } from '../../edge/store/worker-store.js';
import { BASE_TIME_MS, makeRecord, TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';

let database: TempDatabase;

beforeEach(() => {
  database = tempDatabase('edge-worker');
});

/** How many times a setImmediate loop got a turn while `work` ran. */
async function eventLoopTurnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let running = true;
  const spin = () => {
    if (!running) return;
    turns += 1;
    setImmediate(spin);
  };
  setImmediate(spin);
  await work();
  running = false;
  return turns;
}

describe('the worker-backed store', () => {
  it('answers an operation that throws before its first await with the error, and keeps serving', async () => {
    const store = await openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    try {
      const bad = { ...makeRecord({ atMs: BASE_TIME_MS }), timestamp: 'not a time' };
      await expect(store.insertReadings([bad])).rejects.toThrow(/not a valid date-time/);
      const good = makeRecord({ atMs: BASE_TIME_MS + 1 });
      expect(await store.insertReadings([good])).toEqual({ inserted: 1, corrected: 0, duplicates: 0 });
    } finally {
      await store.close();
    }
  });

  it('inserts, claims, acknowledges and counts as the in-thread store does', async () => {
    const store = await openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    try {
      const records = Array.from({ length: 5 }, (_, index) => makeRecord({ atMs: BASE_TIME_MS + index }));
      expect(await store.insertReadings(records)).toEqual({ inserted: 5, corrected: 0, duplicates: 0 });
      expect(await store.insertReadings([{ ...records[0]!, value: 99 }])).toMatchObject({ corrected: 1 });
      const claimed = await store.claimNextBatch(3, MAX_BATCH_BYTES, 'batch-1');
      expect(claimed.records.map((record) => record.id)).toEqual(records.slice(0, 3).map((record) => record.id));
      expect(claimed.records[0]).toMatchObject({ value: 99, version: 2 });
      expect(await store.applyAck({ batchId: 'batch-1', accepted: 3, rejected: [], conflicts: 0 })).toEqual({
        synced: 3,
        failed: 0,
      });
      expect(await store.countByStatus()).toEqual({ pending: 2, syncing: 0, synced: 3, failed: 0 });
      expect(await store.hasPending()).toBe(true);
      await store.recordRejectedReading({
        receivedAt: 1,
        topic: 'sensors/a/b',
        payload: Buffer.from('{oops'),
        reason: 'not JSON',
      });
      expect(await store.countRejectedReadings()).toBe(1);
    } finally {
      await store.close();
    }
    const reader = database.openReader();
    const rejected = await reader.execute('SELECT payload FROM rejected_readings');
    expect(rejected.rows[0]?.['payload']).toBe('{oops'); // the Buffer arrived as bytes, stored as its text
  });

  it("leaves the caller's event loop free while SQLite works, unlike the in-thread store", async () => {
    await fillEdgeBacklog(database.path, TEST_DEVICE_ID, [{ count: 300_000 }]);
    const countThrice = (store: TelemetryStore) => async () => {
      for (let round = 0; round < 3; round += 1) expect(await store.countPending()).toBe(300_000);
    };
    const inThread = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    const inThreadTurns = await eventLoopTurnsDuring(countThrice(inThread));
    await inThread.close();
    const worker = await openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    const workerTurns = await eventLoopTurnsDuring(countThrice(worker));
    await worker.close();
    // each in-thread count holds the loop from start to end: a turn at most between the rounds
    expect(inThreadTurns).toBeLessThanOrEqual(4);
    expect(workerTurns).toBeGreaterThan(inThreadTurns * 10);
  }, 60_000);

  it('rejects with the SQLite error code when the database is locked elsewhere', async () => {
    const store = await openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID, busyTimeoutMs: 50 });
    const other = database.openReader();
    const transaction = await other.transaction('write');
    try {
      await expect(store.insertReadings([makeRecord()])).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      await transaction.rollback();
      transaction.close();
    }
    expect(await store.insertReadings([makeRecord()])).toMatchObject({ inserted: 1 }); // and goes on
    await store.close();
  });

  it('fails to open with the reason when the database was written by a newer agent', async () => {
    const reader = database.openReader();
    await reader.execute('PRAGMA user_version = 999');
    await expect(openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID })).rejects.toThrow(
      /schema version 999 is newer than this agent understands/,
    );
  });

  it('answers the calls made before close(), refuses later ones, and close() twice is safe', async () => {
    const store = await openWorkerTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    const insert = store.insertReadings([makeRecord()]);
    const first = store.close();
    expect(store.close()).toBe(first);
    await expect(insert).resolves.toMatchObject({ inserted: 1 });
    await first;
    await expect(store.countPending()).rejects.toThrow(/closed|stopped/);
  });
});
