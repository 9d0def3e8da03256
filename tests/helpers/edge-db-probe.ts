/**
 * Looking into a running (or frozen, or killed) edge agent's libSQL file from the test process,
 * through a connection of its own: sync-state counts, and whether the agent holds the write lock.
 */
import { createClient } from '@libsql/client';
import { text } from '../../edge/store/telemetry-rows.js';

export interface EdgeSyncCounts {
  pending: number;
  syncing: number;
  synced: number;
  failed: number;
}

export async function edgeSyncCounts(dbPath: string): Promise<EdgeSyncCounts> {
  const client = createClient({ url: `file:${dbPath}`, concurrency: 1, timeout: 2_000 });
  try {
    const result = await client.execute('SELECT sync_status, count(*) AS n FROM telemetry_data GROUP BY sync_status');
    const counts: EdgeSyncCounts = { pending: 0, syncing: 0, synced: 0, failed: 0 };
    for (const row of result.rows) {
      const status = text(row, 'sync_status');
      if (status in counts) counts[status as keyof EdgeSyncCounts] = Number(row['n']);
    }
    return counts;
  } finally {
    client.close();
  }
}

/**
 * True when another connection holds the database's write lock, i.e. is inside a write
 * transaction: BEGIN IMMEDIATE without a busy timeout fails with SQLITE_BUSY at once. When the
 * lock is free it is taken and released again (ROLLBACK) before this returns.
 */
export async function writeLockHeldElsewhere(dbPath: string): Promise<boolean> {
  const client = createClient({ url: `file:${dbPath}`, concurrency: 1, timeout: 0 });
  try {
    const transaction = await client.transaction('write');
    await transaction.rollback();
    transaction.close();
    return false;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY') return true;
    throw error;
  } finally {
    client.close();
  }
}
