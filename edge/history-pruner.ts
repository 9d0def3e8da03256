/**
 * Keeps the edge database bounded: periodically deletes local history the control plane no
 * longer needs from the device (synced readings after a retention window; failed readings,
 * sync_log and rejected payloads after a longer one), in small chunks so that sensor commits
 * are never held up for long. Pending and syncing readings are never deleted.
 */
import type { Logger } from '../common/logger.js';
import type { HistoryCutoffs, PrunedRows, TelemetryStore } from './store/telemetry-store.js';

export interface HistoryRetention {
  /** how long a synced reading stays on the device; default 72 h */
  syncedRetentionMs: number;
  /** how long failed readings, sync_log entries and rejected payloads stay; default 30 days */
  diagnosticsRetentionMs: number;
  /** how often to prune; default 1 h */
  intervalMs: number;
  /** rows per table per transaction; default 500 */
  chunkSize: number;
}

export const DEFAULT_HISTORY_RETENTION: HistoryRetention = {
  syncedRetentionMs: 72 * 3_600_000,
  diagnosticsRetentionMs: 30 * 86_400_000,
  intervalMs: 3_600_000,
  chunkSize: 500,
};

/** The cutoffs at `nowMs` (pure). */
export function historyCutoffs(nowMs: number, retention: HistoryRetention): HistoryCutoffs {
  return {
    syncedBefore: nowMs - retention.syncedRetentionMs,
    diagnosticsBefore: nowMs - retention.diagnosticsRetentionMs,
  };
}

const emptyPruned = (): PrunedRows => ({ synced: 0, failed: 0, syncLog: 0, rejectedReadings: 0 });

// G8 (partial): bounds synced readings and diagnostics; pending readings have no cap yet
/** Prunes chunk after chunk until a chunk deletes less than chunkSize from every table. */
export async function pruneHistoryOnce(
  store: TelemetryStore,
  retention: HistoryRetention,
  nowMs: number,
): Promise<PrunedRows> {
  const cutoffs = historyCutoffs(nowMs, retention);
  const total = emptyPruned();
  for (;;) {
    const chunk = await store.pruneHistory(cutoffs, retention.chunkSize);
    total.synced += chunk.synced;
    total.failed += chunk.failed;
    total.syncLog += chunk.syncLog;
    total.rejectedReadings += chunk.rejectedReadings;
    if (Object.values(chunk).every((count) => count < retention.chunkSize)) return total;
    await new Promise((resolve) => setImmediate(resolve)); // let sensor commits in between chunks
  }
}

export interface HistoryPruner {
  /** stops the timer and waits for a running pass; idempotent (a second call returns the same promise) */
  close(): Promise<void>;
}

export function startHistoryPruner(
  store: TelemetryStore,
  retention: HistoryRetention,
  logger: Logger,
  now: () => number = Date.now,
): HistoryPruner {
  let running: Promise<unknown> = Promise.resolve();
  const run = () => {
    running = pruneHistoryOnce(store, retention, now()).then(
      (pruned) => {
        if (Object.values(pruned).some((count) => count > 0)) logger.info({ pruned }, 'pruned local history');
      },
      (error: unknown) => logger.warn({ err: error }, 'pruning local history failed; will try again'),
    );
  };
  const timer = setInterval(run, retention.intervalMs);
  timer.unref();
  run(); // also at start: a device restarted more often than intervalMs would otherwise never prune
  let closing: Promise<void> | undefined;
  return {
    close() {
      clearInterval(timer);
      closing ??= running.then(() => undefined);
      return closing;
    },
  };
}
