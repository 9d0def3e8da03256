import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import { newId } from '../../common/ids.js';
import {
  historyCutoffs,
  pruneHistoryOnce,
  startHistoryPruner,
  type HistoryRetention,
} from '../../edge/history-pruner.js';
import { PRUNE_STATEMENTS, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { BASE_TIME_MS, makeRecord } from '../helpers/records.js';
import { tempTelemetryStore } from '../helpers/edge-temp-db.js';
import { testLogger } from '../helpers/logger.js';
import { registerCleanup } from '../helpers/teardown.js';

const HOUR = 3_600_000;
const retention: HistoryRetention = {
  syncedRetentionMs: 2 * HOUR,
  diagnosticsRetentionMs: 24 * HOUR,
  intervalMs: HOUR,
  chunkSize: 3,
};

let store: TelemetryStore;
let reader: Client;

async function statuses(): Promise<Record<string, number>> {
  const result = await reader.execute('SELECT sync_status, count(*) AS n FROM telemetry_data GROUP BY sync_status');
  return Object.fromEntries(result.rows.map((row) => [row['sync_status'] as string, Number(row['n'])]));
}
async function count(table: string): Promise<number> {
  return Number((await reader.execute(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.['n']);
}

/** Inserts readings and acknowledges them at `ackAtMs`, rejecting `rejectCount` of them. */
async function syncedBatch(size: number, ackAtMs: number, rejectCount = 0): Promise<void> {
  const records = Array.from({ length: size }, (_, i) => makeRecord({ atMs: BASE_TIME_MS + i }));
  await store.insertReadings(records);
  const batchId = newId();
  const claimed = await store.claimPendingBatch(1000, 1_000_000, batchId);
  const rejected = claimed.slice(0, rejectCount).map((record) => ({ id: record.id, reason: 'test' }));
  await store.applyAck({ batchId, accepted: claimed.length - rejectCount, rejected, conflicts: 0 }, ackAtMs);
}

beforeEach(async () => {
  ({ store, reader } = await tempTelemetryStore('edge-pruner'));
});

describe('history retention', () => {
  it('computes cutoffs from the clock', () => {
    expect(historyCutoffs(10 * HOUR, retention)).toEqual({ syncedBefore: 8 * HOUR, diagnosticsBefore: -14 * HOUR });
  });

  it('deletes old synced readings in chunks and never pending or syncing ones', async () => {
    const now = BASE_TIME_MS + 100 * HOUR;
    await syncedBatch(7, now - 5 * HOUR); // old: goes
    await syncedBatch(2, now - HOUR); // recent: stays
    await store.insertReadings([
      makeRecord({ atMs: BASE_TIME_MS - 10 * HOUR }),
      makeRecord({ atMs: BASE_TIME_MS - 9 * HOUR }),
    ]);
    await store.claimPendingBatch(1, 1_000_000, newId()); // one syncing, one pending, both very old

    const pruned = await pruneHistoryOnce(store, retention, now);

    expect(pruned.synced).toBe(7); // more than one chunk of 3
    expect(await statuses()).toEqual({ synced: 2, syncing: 1, pending: 1 });
  });

  it('prunes once at start, not only after the first interval (a device restarted more often would never prune)', async () => {
    const now = BASE_TIME_MS + 100 * HOUR;
    await syncedBatch(4, now - 5 * HOUR);
    const pruner = startHistoryPruner(store, retention, testLogger('pruner'), () => now);
    registerCleanup(() => pruner.close());
    await expect.poll(() => count('telemetry_data'), { timeout: 2000, interval: 10 }).toBe(0);
  });

  it('finds what to prune through an index on each cutoff column, never by scanning what is kept', async () => {
    const cutoffColumns = {
      synced: 'sync_timestamp',
      failed: 'timestamp',
      syncLog: 'started_at',
      rejectedReadings: 'received_at',
    };
    for (const [table, sql] of Object.entries(PRUNE_STATEMENTS)) {
      const plan = await reader.execute({ sql: `EXPLAIN QUERY PLAN ${sql}`, args: [0, 1] });
      const details = plan.rows.map((row) => row['detail'] as string);
      const column = cutoffColumns[table as keyof typeof cutoffColumns];
      expect(
        details.some((detail) => /^SEARCH .* USING (COVERING )?INDEX /.test(detail) && detail.includes(`${column}<?`)),
        `${table}: ${details.join(' | ')}`,
      ).toBe(true);
      expect(
        details.filter((detail) => detail.startsWith('SCAN')),
        `${table}: ${details.join(' | ')}`,
      ).toEqual([]);
    }
  });

  it('keeps failed readings, sync_log and rejected payloads for the longer diagnostics window', async () => {
    const now = BASE_TIME_MS + 100 * HOUR;
    await syncedBatch(4, now - 30 * HOUR, 2); // 2 synced and 2 failed, 30 h ago (readings 100 h old)
    await syncedBatch(3, now - HOUR, 3); // 3 failed an hour ago, although the readings are 100 h old: kept
    await store.writeSyncLog({
      syncType: 'upstream',
      startedAt: now - 30 * HOUR,
      completedAt: now - 30 * HOUR,
      recordsCount: 1,
      status: 'success',
    });
    await store.writeSyncLog({
      syncType: 'upstream',
      startedAt: now - HOUR,
      completedAt: now - HOUR,
      recordsCount: 1,
      status: 'success',
    });
    await store.recordRejectedReading({
      receivedAt: now - 30 * HOUR,
      topic: 'sensors/a/b',
      payload: 'x',
      reason: 'old',
    });
    await store.recordRejectedReading({ receivedAt: now - HOUR, topic: 'sensors/a/b', payload: 'y', reason: 'new' });

    const pruned = await pruneHistoryOnce(store, retention, now);

    expect(pruned).toEqual({ synced: 2, failed: 2, syncLog: 1, rejectedReadings: 1 });
    expect(await statuses()).toEqual({ failed: 3 });
    expect(await count('sync_log')).toBe(1);
    expect(await count('rejected_readings')).toBe(1);
  });
});
