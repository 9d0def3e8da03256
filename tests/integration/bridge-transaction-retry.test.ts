/**
 * Real serialization failures (SQLSTATE 40001) on PostgreSQL at SERIALIZABLE, and
 * runSerializable re-running the whole transaction until both sides have committed.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { runSerializable, type TransactionRetryEvent } from '../../bridge/db/transaction-retry.js';
import { writeTelemetryBatch } from '../../bridge/ingest/telemetry-writer.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { makeRow } from '../helpers/records.js';

let db: Database;

beforeAll(async () => {
  db = await openTestDatabase(await startTestPostgres(), 'bridge-retry-test', { poolSize: 20, migrate: true });
  await db.none('CREATE TABLE IF NOT EXISTS on_call (doctor TEXT PRIMARY KEY, on_duty BOOLEAN NOT NULL)');
});

/** Resolves once `parties` callers have arrived; bounded so a broken test fails instead of hanging. */
function barrier(parties: number, timeoutMs = 10_000): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const allThere = new Promise<void>((resolve, reject) => {
    release = resolve;
    setTimeout(() => reject(new Error(`barrier: only ${arrived} of ${parties} arrived`)), timeoutMs).unref();
  });
  return () => {
    arrived += 1;
    if (arrived === parties) release();
    return allThere;
  };
}

describe('runSerializable', () => {
  it('retries a real write-skew serialization failure until both transactions commit', async () => {
    // The classic write skew: each transaction reads both rows, then takes a different doctor off
    // duty. Either order alone is fine; interleaved, SERIALIZABLE must abort one with 40001.
    await db.none("TRUNCATE on_call; INSERT INTO on_call VALUES ('alice', true), ('bob', true)");
    const bothHaveRead = barrier(2);
    const retries: TransactionRetryEvent[] = [];
    const attempts = { alice: 0, bob: 0 };

    const goOffDuty = (doctor: 'alice' | 'bob') =>
      runSerializable(
        db,
        `off-duty-${doctor}`,
        async (t) => {
          attempts[doctor] += 1;
          const { onDuty } = await t.one<{ onDuty: number }>(
            'SELECT count(*)::int AS "onDuty" FROM on_call WHERE on_duty',
          );
          if (attempts[doctor] === 1) await bothHaveRead(); // first attempts overlap for sure
          if (onDuty < 2) return 'stayed: someone must be on duty';
          await t.none('UPDATE on_call SET on_duty = false WHERE doctor = $1', [doctor]);
          return 'went off duty';
        },
        { onRetry: (event) => retries.push(event) },
      );

    const results = await Promise.all([goOffDuty('alice'), goOffDuty('bob')]);

    expect(retries.length).toBeGreaterThan(0);
    expect(retries.every((r) => (r.error as { code?: string }).code === '40001')).toBe(true);
    // Both committed, serializably: exactly one went off duty, the retried one saw that and stayed.
    expect([...results].sort()).toEqual(['stayed: someone must be on duty', 'went off duty']);
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM on_call WHERE on_duty')).n).toBe(1);
  });

  it('does not retry other errors', async () => {
    let attempts = 0;
    const retries: TransactionRetryEvent[] = [];
    await expect(
      runSerializable(
        db,
        'bad-sql',
        async (t) => {
          attempts += 1;
          await t.none('SELECT * FROM no_such_table');
        },
        { onRetry: (event) => retries.push(event) },
      ),
    ).rejects.toMatchObject({ code: '42P01' });
    expect(attempts).toBe(1);
    expect(retries).toEqual([]);
  });

  it('gives up after the policy allows, with the serialization error', async () => {
    let attempts = 0;
    await expect(
      runSerializable(
        db,
        'always-conflicts',
        () => {
          attempts += 1;
          return Promise.reject(Object.assign(new Error('could not serialize access'), { code: '40001' }));
        },
        { policy: { initialDelayMs: 1, maxDelayMs: 2, multiplier: 2, jitter: 'none', maxAttempts: 3 } },
      ),
    ).rejects.toMatchObject({ code: '40001' });
    expect(attempts).toBe(3);
  });
});

describe('concurrent telemetry batches on overlapping rows', () => {
  it('all commit (with retries) and the highest version of every reading wins', async () => {
    const device = randomUUID();
    const ids = Array.from({ length: 40 }, () => randomUUID());
    const retries: TransactionRetryEvent[] = [];
    // 8 writers, each with every id at its own version, all at once: they read and write the same
    // rows, the same devices and sync_status row.
    const writers = Array.from({ length: 8 }, (_, writer) =>
      writeTelemetryBatch(
        db,
        [
          {
            deviceId: device,
            records: ids.map((id) => makeRow(device, { id, version: writer + 1, value: (writer + 1) * 10 })),
            invalid: [],
            pendingCount: null,
          },
        ],
        {
          retry: { onRetry: (event) => retries.push(event) },
        },
      ),
    );
    const results = await Promise.all(writers);

    expect(results.every((r) => r.outcomes[0]?.accepted === ids.length)).toBe(true);
    expect(retries.length).toBeGreaterThan(0);
    const stored = await db.any<{ version: string }>('SELECT version FROM telemetry_data WHERE device_id = $1', [
      device,
    ]);
    expect(stored).toHaveLength(ids.length);
    expect(stored.every((r) => r.version === '8')).toBe(true); // BIGINT arrives as a string
    // inserted counted once per reading, however often the transactions were re-run
    expect(
      (await db.one('SELECT total_synced_records FROM sync_status WHERE device_id = $1', [device]))
        .total_synced_records,
    ).toBe(String(ids.length));
    const conflicts = results.reduce((sum, r) => sum + (r.outcomes[0]?.conflicts ?? 0), 0);
    expect(
      (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM conflict_log WHERE device_id = $1', [device])).n,
    ).toBe(conflicts);
  });
});
