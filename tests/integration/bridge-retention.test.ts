/**
 * Telemetry retention on PostgreSQL (CockroachDB uses row-level TTL instead).
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { deleteExpiredTelemetry, startRetentionScheduler } from '../../bridge/db/retention.js';
import { testLogger } from '../helpers/logger.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { registerCleanup } from '../helpers/teardown.js';

let db: Database;
const device = randomUUID();

beforeAll(async () => {
  db = await openTestDatabase(await startTestPostgres(), 'bridge-retention-test', { migrate: true });
  await db.none("INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, 'd', 'edge')", [device]);
});

beforeEach(async () => {
  await db.none('TRUNCATE telemetry_data');
});

/** `count` rows last written `ageDays` days ago */
async function insertRows(count: number, ageDays: number): Promise<void> {
  await db.none(
    `INSERT INTO telemetry_data (id, device_id, sensor_id, "timestamp", data_type, value, version, synced_at, content_hash)
     SELECT gen_random_uuid(), $1, 's', now(), 't', g, 1, now() - ($2 * INTERVAL '1 day'), '\\x00'::bytea
     FROM generate_series(1, $3) AS g`,
    [device, ageDays, count],
  );
}

const countRows = async (): Promise<number> =>
  (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data')).n;

describe('deleteExpiredTelemetry', () => {
  it('deletes only rows written before the retention, in chunks until one comes back short', async () => {
    await insertRows(25, 91);
    await insertRows(7, 89);
    await insertRows(3, 0);

    const pass = await deleteExpiredTelemetry(db, { dialect: 'postgresql', retentionDays: 90, chunkSize: 10 });

    expect(pass).toEqual({ deleted: 25, chunks: 3 });
    expect(await countRows()).toBe(10);
    expect(
      (
        await db.one<{ n: number }>(
          "SELECT count(*)::int AS n FROM telemetry_data WHERE synced_at < now() - INTERVAL '90 days'",
        )
      ).n,
    ).toBe(0);
  });

  it('stops after one empty chunk when nothing is expired', async () => {
    await insertRows(5, 1);
    expect(await deleteExpiredTelemetry(db, { dialect: 'postgresql', retentionDays: 90, chunkSize: 10 })).toEqual({
      deleted: 0,
      chunks: 1,
    });
    expect(await countRows()).toBe(5);
  });

  it('honours a shorter retention', async () => {
    await insertRows(4, 8);
    await insertRows(2, 6);
    expect((await deleteExpiredTelemetry(db, { dialect: 'postgresql', retentionDays: 7 })).deleted).toBe(4);
  });

  it('is a no-op on CockroachDB, whose row-level TTL does the work', async () => {
    await insertRows(3, 365);
    expect(await deleteExpiredTelemetry(db, { dialect: 'cockroachdb', retentionDays: 90 })).toEqual({
      deleted: 0,
      chunks: 0,
    });
    expect(await countRows()).toBe(3);
  });
});

describe('startRetentionScheduler', () => {
  it('runs passes on its interval until stopped', async () => {
    await insertRows(12, 100);
    const scheduler = startRetentionScheduler(db, {
      dialect: 'postgresql',
      retentionDays: 90,
      chunkSize: 5,
      intervalMs: 20,
      logger: testLogger('retention'),
    });
    const closeScheduler = registerCleanup(() => scheduler.close());
    await expect.poll(countRows, { timeout: 10_000, interval: 20 }).toBe(0);
    await insertRows(3, 100);
    await expect.poll(countRows, { timeout: 10_000, interval: 20 }).toBe(0);
    await closeScheduler();
    await insertRows(2, 100);
    expect(await scheduler.runNow()).toEqual({ deleted: 2, chunks: 1 });
  });
});
