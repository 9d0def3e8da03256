/**
 * Every statement on the claim/ack/release/count path uses the index that matches it, on a store
 * with a backlog of a million pending readings (filled directly, in seconds), before and after
 * ANALYZE: no statement walks the backlog, so a claim costs O(batch) however long the outage was.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '@libsql/client';
import { fillEdgeBacklog } from '../../devtools/edge-backlog.js';
import { MAX_BATCH_BYTES } from '../../schemas/limits.js';
import {
  LEGACY_OLDEST_RELEASED_BATCH,
  openTelemetryStore,
  SYNC_PATH_STATEMENTS,
} from '../../edge/store/telemetry-store.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';

const BACKLOG = 1_000_000;
const RELEASED_BATCH = '7d1c0a52-3f7e-4c1b-9a55-2f0e8b6d4c11';
const START_MS = Date.UTC(2025, 0, 1);

let database: TempDatabase;

beforeAll(async () => {
  database = tempDatabase('edge-plans');
  await fillEdgeBacklog(database.path, TEST_DEVICE_ID, [
    { count: 50_000, status: 'synced', startMs: START_MS - 100_000 },
    { count: BACKLOG, status: 'pending', startMs: START_MS },
    { count: 4_000, status: 'syncing', batchId: '0b6f7f1e-0000-4000-8000-000000000001', startMs: START_MS - 5_000 },
    // a batch released after an ack timeout: pending with its batch id, newer than most of the backlog
    { count: 1_000, status: 'pending', batchId: RELEASED_BATCH, startMs: START_MS + BACKLOG },
  ]);
}, 120_000);

/** EXPLAIN QUERY PLAN's detail lines, with every parameter bound to NULL */
async function plan(client: Client, sql: string): Promise<string[]> {
  const parameters = (sql.match(/\?/g) ?? []).length;
  const result = await client.execute({ sql: `EXPLAIN QUERY PLAN ${sql}`, args: Array(parameters).fill(null) });
  return result.rows.map((row) => row['detail'] as string);
}

/** a connection of the test's own, closed afterwards (an open one would hold the file's locks) */
async function withClient<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = createClient({ url: database.url, concurrency: 1 });
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

async function plans(client: Client): Promise<Record<string, string[]>> {
  const found: Record<string, string[]> = {};
  for (const [name, expected] of Object.entries(EXPECTED)) found[name] = await plan(client, expected.sql);
  return found;
}

const expectedPlans = (): Record<string, string[]> =>
  Object.fromEntries(Object.entries(EXPECTED).map(([name, expected]) => [name, expected.plan]));

const BY_ROWID = ['SEARCH telemetry_data USING INTEGER PRIMARY KEY (rowid=?)'];
const EXPECTED: Record<string, { sql: string; plan: string[] }> = {
  oldestReleasedBatch: {
    sql: SYNC_PATH_STATEMENTS.oldestReleasedBatch,
    // a scan of the partial index holds only released rows, and LIMIT 1 stops at the first
    plan: ['SCAN telemetry_data USING INDEX idx_released_batches'],
  },
  releasedBatchRows: {
    sql: SYNC_PATH_STATEMENTS.releasedBatchRows,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_batch (sync_batch_id=?)', 'USE TEMP B-TREE FOR ORDER BY'],
  },
  oldestPending: {
    sql: SYNC_PATH_STATEMENTS.oldestPending,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_status (sync_status=?)'],
  },
  markSyncing: { sql: SYNC_PATH_STATEMENTS.markSyncing(1000), plan: BY_ROWID },
  clearBatchId: { sql: SYNC_PATH_STATEMENTS.clearBatchId(10), plan: BY_ROWID },
  failOversized: { sql: SYNC_PATH_STATEMENTS.failOversized, plan: BY_ROWID },
  ackRejected: {
    sql: SYNC_PATH_STATEMENTS.ackRejected,
    plan: ['SEARCH telemetry_data USING INDEX sqlite_autoindex_telemetry_data_1 (id=?)'],
  },
  ackSynced: {
    sql: SYNC_PATH_STATEMENTS.ackSynced,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_batch (sync_batch_id=?)'],
  },
  ackDeleted: {
    sql: SYNC_PATH_STATEMENTS.ackDeleted,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_batch (sync_batch_id=?)'],
  },
  releaseBatch: {
    sql: SYNC_PATH_STATEMENTS.releaseBatch,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_batch (sync_batch_id=?)'],
  },
  releaseAllSyncing: {
    sql: SYNC_PATH_STATEMENTS.releaseAllSyncing,
    plan: ['SEARCH telemetry_data USING INDEX idx_sync_status (sync_status=?)'],
  },
  hasPending: {
    sql: SYNC_PATH_STATEMENTS.hasPending,
    plan: ['SEARCH telemetry_data USING COVERING INDEX idx_sync_status (sync_status=?)'],
  },
  pruneOldestSynced: {
    sql: SYNC_PATH_STATEMENTS.pruneOldestSynced,
    plan: [
      'SEARCH telemetry_data USING INTEGER PRIMARY KEY (rowid=?)',
      'LIST SUBQUERY 1',
      'SEARCH telemetry_data USING COVERING INDEX idx_sync_status (sync_status=?)',
    ],
  },
  dropOldestPending: {
    sql: SYNC_PATH_STATEMENTS.dropOldestPending,
    plan: [
      'SEARCH telemetry_data USING INTEGER PRIMARY KEY (rowid=?)',
      'LIST SUBQUERY 1',
      'SEARCH telemetry_data USING COVERING INDEX idx_sync_status (sync_status=?)',
    ],
  },
  countStatus: {
    sql: SYNC_PATH_STATEMENTS.countStatus,
    plan: ['SEARCH telemetry_data USING COVERING INDEX idx_sync_status (sync_status=?)'],
  },
};

describe(`the claim/ack path on a backlog of ${BACKLOG.toLocaleString('en')} pending readings`, () => {
  it('pins every statement of the path in this test', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual(Object.keys(SYNC_PATH_STATEMENTS).sort());
  });

  it('uses the intended index for every statement and never scans the table', async () => {
    expect(await withClient(plans)).toEqual(expectedPlans());
  });

  it('would walk every pending row with the released-batch lookup unpinned (why the index is named)', async () => {
    // SQLite 3.45 prefers idx_sync_status for the unpinned form: O(pending) per claim
    expect(await withClient((client) => plan(client, LEGACY_OLDEST_RELEASED_BATCH))).toEqual([
      'SEARCH telemetry_data USING INDEX idx_sync_status (sync_status=?)',
    ]);
  });

  it('claims the released batch first, then the oldest pending readings, from the large backlog', async () => {
    const store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    try {
      const released = await store.claimNextBatch(1000, MAX_BATCH_BYTES, 'new-batch-1');
      expect(released.batchId).toBe(RELEASED_BATCH);
      expect(released.records).toHaveLength(1000);
      const next = await store.claimNextBatch(1000, MAX_BATCH_BYTES, 'new-batch-2');
      expect(next.batchId).toBe('new-batch-2');
      expect(next.records.map((record) => Date.parse(record.timestamp))).toEqual(
        Array.from({ length: 1000 }, (_, index) => START_MS + index),
      );
    } finally {
      await store.close();
    }
  }, 30_000);

  it('keeps those plans after ANALYZE has given the planner statistics', async () => {
    const analyzed = await withClient(async (client) => {
      await client.execute('ANALYZE');
      return plans(client);
    });
    expect(analyzed).toEqual(expectedPlans());
  }, 60_000);
});
