/**
 * The edge's two stores on one libSQL connection: the telemetry store (readings, batches) and the
 * downstream store (G6: command_queue, device_config). One connection because @libsql/client 0.18
 * applies PRAGMAs per connection and the telemetry store relies on synchronous=FULL (./database.ts);
 * both serialize through the same queue, so a command or config write is durable exactly like a
 * reading. The downstream store is closed with the telemetry store (the database closes once).
 */
import { openEdgeDatabase } from './database.js';
import { SqlDownstreamStore, type DownstreamStore } from './downstream-store.js';
import { SqlTelemetryStore, type OpenTelemetryStoreOptions, type TelemetryStore } from './telemetry-store.js';

export interface EdgeStores {
  telemetry: TelemetryStore;
  downstream: DownstreamStore;
}

/** Both stores, SQLite on the calling thread (tests, scripts, and inside the store worker). */
export async function openEdgeStores(options: OpenTelemetryStoreOptions): Promise<EdgeStores> {
  const db = await openEdgeDatabase(options.url, options);
  const telemetry = new SqlTelemetryStore(db, options.deviceId, {
    legacyClaimPlan: options.legacyClaimPlan ?? false,
    ...(options.rejectedReadings ? { rejectedReadings: options.rejectedReadings } : {}),
  });
  return { telemetry, downstream: new SqlDownstreamStore(db) };
}
