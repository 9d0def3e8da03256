/**
 * G7 on PostgreSQL 17 at SERIALIZABLE: one device's large telemetry batch and another device's
 * small one, written at the same time by two transactions, both commit.
 *
 * PostgreSQL records a serializable transaction's reads as predicate locks on whole index pages
 * (and on the whole index once a transaction holds more than max_pred_locks_per_relation pages).
 * When the writer looked up a batch's stored rows by the primary key (the random UUID id alone),
 * 1000 lookups covered most leaf pages of that key, so the two transactions read pages the other
 * one wrote and PostgreSQL cancelled one of them (40001): the bench's flooding device stored none
 * of its batches while the probe kept writing, and every cancelled attempt cost the probe time.
 * The writer now inserts, reads and upserts through (device_id, id) (migration 004), so each
 * transaction reads only index pages of its own device. The test runs both paths side by side on
 * the same data: the id-wide path (still the fallback for an id owned by another device) is
 * cancelled, the device path is not.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { pgp } from '../../bridge/db/connection.js';
import {
  storedRowsQuery,
  writeTelemetryBatch,
  writeTelemetryInTransaction,
  type TelemetryWriteMessage,
  type TelemetryWriteScope,
} from '../../bridge/ingest/telemetry-writer.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { makeRow } from '../helpers/records.js';

// far apart in key order, with other devices' rows between them: no index page holds both
const LARGE = '10000000-0000-4000-8000-000000000001';
const SMALL = 'f0000000-0000-4000-8000-000000000001';
const SERIALIZABLE = new pgp.txMode.TransactionMode({ tiLevel: pgp.txMode.isolationLevel.serializable });

let db: Database;

beforeAll(async () => {
  db = await openTestDatabase(await startTestPostgres(), 'bridge-writer-isolation', { migrate: true });
});

beforeEach(async () => {
  await db.none('TRUNCATE telemetry_data, conflict_log, sync_status, commands, device_configs, devices');
  // 30,000 readings of 30 other devices: the primary key spans a few hundred leaf pages
  for (let i = 0; i < 30; i += 1) {
    const device = `8${String(i).padStart(7, '0')}-0000-4000-8000-000000000000`;
    await writeTelemetryBatch(db, [message(device, 1000)]);
  }
  // both devices known already (a device's first batch also inserts its devices row)
  await writeTelemetryBatch(db, [message(LARGE, 10)]);
  await writeTelemetryBatch(db, [message(SMALL, 10)]);
});

function message(deviceId: string, count: number): TelemetryWriteMessage {
  return {
    deviceId,
    records: Array.from({ length: count }, () => makeRow(deviceId, { id: randomUUID() })),
    invalid: [],
    pendingCount: null,
  };
}

/**
 * The large batch's transaction reads its stored rows (the writer's own query), then waits while
 * the small batch is written and committed in a transaction of its own, then writes (reading
 * again, as the writer does) and commits: the interleaving of two writers under a flood. Returns
 * how each ended.
 */
async function overlap(scope: TelemetryWriteScope): Promise<{ small: string; large: string }> {
  const large = message(LARGE, 1000);
  const small = message(SMALL, 10);
  let smallOutcome = 'not run';
  const largeOutcome = await db
    .tx({ mode: SERIALIZABLE }, async (t) => {
      await t.any(storedRowsQuery([large], scope) as string);
      smallOutcome = await db
        .tx({ mode: SERIALIZABLE }, (t2) => writeTelemetryInTransaction(t2, [small], scope))
        .then(
          () => 'committed',
          (error: { code?: string }) => `failed ${error.code}`,
        );
      await writeTelemetryInTransaction(t, [large], scope);
    })
    .then(
      () => 'committed',
      (error: { code?: string }) => `failed ${error.code}`,
    );
  return { small: smallOutcome, large: largeOutcome };
}

describe('two devices writing at once at SERIALIZABLE', () => {
  it("commits both a device's 1000-reading batch and another device's 10-reading batch written beside it", async () => {
    expect(await overlap('device')).toEqual({ small: 'committed', large: 'committed' });
    const counts = await db.any<{ device_id: string; n: number }>(
      'SELECT device_id, count(*)::int AS n FROM telemetry_data WHERE device_id IN ($1, $2) GROUP BY device_id ORDER BY device_id',
      [LARGE, SMALL],
    );
    expect(counts).toEqual([
      { device_id: LARGE, n: 1010 },
      { device_id: SMALL, n: 20 },
    ]);
  });

  it('would have cancelled the large batch when both read the primary key (the id-wide path, kept as the fallback)', async () => {
    expect(await overlap('record-id')).toEqual({ small: 'committed', large: 'failed 40001' });
  });
});
