/**
 * Telemetry retention on PostgreSQL. CockroachDB expires rows itself (row-level TTL,
 * ttl_expiration_expression = 'synced_at + INTERVAL ''90 days''' on telemetry_data; the bridge sets
 * synced_at on every write); on PostgreSQL this job deletes the same rows, those whose last write
 * (synced_at) is older than the retention, in bounded chunks, each chunk its own short
 * transaction, so it never holds long locks or builds one huge transaction. On CockroachDB every
 * function here is a no-op.
 */
import type { Logger } from '../../common/logger.js';
import type { Database } from './connection.js';
import type { SqlDialect } from './dialect.js';
import { runSerializable, type TransactionRetryOptions } from './transaction-retry.js';

export interface RetentionOptions {
  dialect: SqlDialect;
  retentionDays: number;
  /** rows per DELETE; default 1000 */
  chunkSize?: number;
  retry?: TransactionRetryOptions;
}

export interface RetentionPass {
  deleted: number;
  chunks: number;
}

const DELETE_CHUNK = `DELETE FROM telemetry_data WHERE id IN (
  SELECT id FROM telemetry_data WHERE synced_at < now() - ($1 * INTERVAL '1 day') LIMIT $2
)`;

// G8 (partial): telemetry_data's bound on PostgreSQL (CockroachDB: row-level TTL)
/** Deletes expired telemetry until a chunk comes back short. */
export async function deleteExpiredTelemetry(db: Database, options: RetentionOptions): Promise<RetentionPass> {
  if (options.dialect === 'cockroachdb') return { deleted: 0, chunks: 0 };
  const chunkSize = options.chunkSize ?? 1000;
  let deleted = 0;
  let chunks = 0;
  for (;;) {
    const count = await runSerializable(
      db,
      'retention-chunk',
      (t) => t.result(DELETE_CHUNK, [options.retentionDays, chunkSize], (result) => result.rowCount),
      options.retry,
    );
    deleted += count;
    chunks += 1;
    if (count < chunkSize) return { deleted, chunks };
  }
}

export interface RetentionScheduler {
  /** runs one pass now (also what the timer does); resolves when it is done */
  runNow(): Promise<RetentionPass>;
  /** stops the timer and waits for a running pass; idempotent (a second call returns the same promise) */
  close(): Promise<void>;
}

/**
 * Runs deleteExpiredTelemetry every `intervalMs` (first run after one interval). Passes never
 * overlap; a failed pass is logged and the next one runs on schedule.
 */
export function startRetentionScheduler(
  db: Database,
  options: RetentionOptions & { intervalMs: number; logger: Logger },
): RetentionScheduler {
  if (options.dialect === 'cockroachdb') {
    options.logger.info('telemetry retention is CockroachDB row-level TTL; no retention job');
    const closed = Promise.resolve();
    return { runNow: () => Promise.resolve({ deleted: 0, chunks: 0 }), close: () => closed };
  }
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<RetentionPass> | undefined;
  let stopped = false;
  let closing: Promise<void> | undefined;

  const runNow = (): Promise<RetentionPass> => {
    running ??= deleteExpiredTelemetry(db, options).finally(() => {
      running = undefined;
    });
    return running;
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      runNow()
        .then((pass) => {
          if (pass.deleted > 0) options.logger.info(pass, 'expired telemetry deleted');
        })
        .catch((error: unknown) => options.logger.error({ err: error }, 'telemetry retention pass failed'))
        .finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  schedule();

  return {
    runNow,
    close: () => {
      stopped = true;
      clearTimeout(timer);
      closing ??= (running ?? Promise.resolve()).then(
        () => undefined,
        () => undefined,
      );
      return closing;
    },
  };
}
