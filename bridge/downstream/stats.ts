/**
 * G6: the downstream gauges (bridge/metrics.ts), refreshed from the database every 15 s by
 * bridge/downstream/downstream.ts: commands by status and type, the age of the oldest live
 * command, and the config keys whose current version is not applied (config-service.ts
 * LAGGING_CONDITION). Aggregates over indexed columns; no per-device series.
 */
import { LIVE_COMMAND_STATUSES } from '../../schemas/command-lifecycle.js';
import type { Database } from '../db/connection.js';
import type { BridgeMetrics } from '../metrics.js';
import { LAGGING_CONDITION } from './config-service.js';

export async function refreshDownstreamGauges(db: Database, metrics: BridgeMetrics, nowMs: number): Promise<void> {
  const byStatus = await db.any<{ status: string; command_type: string; n: string }>(
    'SELECT status, command_type, count(*) AS n FROM commands GROUP BY status, command_type',
  );
  const oldest = await db.one<{ oldest: Date | null }>(
    'SELECT min(created_at) AS oldest FROM commands WHERE status IN ($1:csv)',
    [LIVE_COMMAND_STATUSES],
  );
  const lagging = await db.one<{ n: string }>(`SELECT count(*) AS n FROM device_configs WHERE ${LAGGING_CONDITION}`);
  metrics.commands.reset();
  for (const row of byStatus) metrics.commands.set({ status: row.status, type: row.command_type }, Number(row.n));
  metrics.oldestLiveCommandSeconds.set(
    oldest.oldest === null ? 0 : Math.max(0, (nowMs - oldest.oldest.getTime()) / 1000),
  );
  metrics.configKeysLagging.set(Number(lagging.n));
}
