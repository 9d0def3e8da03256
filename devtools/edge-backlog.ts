/**
 * Fills an edge agent's libSQL file with a backlog directly, in seconds instead of the minutes a
 * sensor would need (about 6 s per million rows on the 2-core development machine): one
 * INSERT … SELECT over a recursive CTE per call. Used by the query-plan test, the store's large
 * backlog tests and scripts/bench-drain.ts.
 *
 * The rows are what the agent itself would store: valid reading ids (UUIDs), one device, ten
 * sensors, timestamps one millisecond apart in arrival order, version 1.
 */
import { randomInt } from 'node:crypto';
import { createClient } from '@libsql/client';
import { openTelemetryStore } from '../edge/store/telemetry-store.js';

export interface BacklogRows {
  /** rows to add */
  count: number;
  /** 'pending' by default */
  status?: 'pending' | 'syncing' | 'synced' | 'failed';
  /** batch id for every row (e.g. released batches: pending with a batch id) */
  batchId?: string;
  /** first reading's timestamp (epoch ms); the next ones follow 1 ms apart */
  startMs?: number;
  /** synced/failed rows: when they were confirmed (epoch ms); default startMs */
  syncTimestampMs?: number;
}

/** Creates the schema if needed (through the agent's own migrations), then appends each group of rows. */
export async function fillEdgeBacklog(dbPath: string, deviceId: string, groups: readonly BacklogRows[]): Promise<void> {
  const store = await openTelemetryStore({ url: `file:${dbPath}`, deviceId });
  await store.close();
  const client = createClient({ url: `file:${dbPath}`, concurrency: 1 });
  try {
    for (const group of groups) {
      if (group.count <= 0) continue;
      const startMs = group.startMs ?? Date.UTC(2025, 0, 1);
      // a random prefix per group keeps ids unique across groups and calls
      const prefix = randomInt(0, 2 ** 32);
      await client.execute({
        sql: `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
              INSERT INTO telemetry_data (id, device_id, sensor_id, timestamp, data_type, value, unit, metadata,
                                          sync_status, sync_batch_id, sync_timestamp)
              SELECT printf('%08x-0000-4000-8000-%012x', ?, i), ?, 'sensor-' || (i % 10), ? + i, 'temperature',
                     (i % 1000) / 10.0, 'C', NULL, ?, ?, ?
              FROM n`,
        args: [
          group.count - 1,
          prefix,
          deviceId,
          startMs,
          group.status ?? 'pending',
          group.batchId ?? null,
          group.status === 'synced' || group.status === 'failed' ? (group.syncTimestampMs ?? startMs) : null,
        ],
      });
    }
  } finally {
    client.close();
  }
}
