/**
 * Carries certificate revocations from the database to every broker node (G9: a revoked identity
 * is refused everywhere within seconds).
 *
 * The broker has no database; the bridge has one and a service-role MQTT connection. Every
 * REVOCATION_POLL_MS (default 1 s) it asks the database for count(*) and max(revoked_at) of
 * revoked_certificates (answered from the primary key and idx_revoked_certificates_revoked_at:
 * portable SQL, no triggers, no LISTEN/NOTIFY, which CockroachDB does not have). When that
 * changes, and at least every minute anyway (a row deleted and another inserted could leave both
 * unchanged), it reads the serials with the database's transaction time and, if they differ from
 * what it last published, publishes the complete list, retained, QoS 1, on control/revocations
 * (schemas/revocation-list.schema.json). It publishes again after every reconnect to the broker:
 * a standalone broker that restarted has lost its retained messages.
 *
 * The broker nodes subscribe to that topic internally and read the retained copy when they start
 * (broker/revocation-sync.ts); they keep the list with the latest transaction time, so an old copy
 * never replaces a newer one. From `certs revoke` to a closed connection: at most one poll
 * interval, one transaction and one MQTT hop through Redis.
 */
import type { Logger } from '../common/logger.js';
import { MAX_REVOKED_CERTIFICATES } from '../schemas/limits.js';
import type { RevocationList } from '../schemas/messages.js';
import type { Database } from './db/connection.js';
import { revocationSnapshot, revocationSummary } from './db/revocations.js';
import type { TransactionRetryOptions } from './db/transaction-retry.js';

export interface RevocationPublisherOptions {
  db: Database;
  /** publishes the payload retained with QoS 1 on control/revocations; resolves on the PUBACK */
  publish(payload: string): Promise<void>;
  logger: Logger;
  pollIntervalMs: number;
  /** how often the whole list is compared even when the summary did not change; default 60 s */
  fullCheckIntervalMs?: number;
  retry?: TransactionRetryOptions;
  /** called after each publish with the number of serials */
  onPublished?(count: number): void;
}

export interface RevocationPublisher {
  /** Publishes the list again at once (after a reconnect to the broker). */
  republish(): void;
  /** Stops polling; waits for a poll in progress. Idempotent. */
  close(): Promise<void>;
}

/** The control/revocations payload, or why there is none (pure). */
export function revocationListPayload(
  takenAt: Date,
  serials: readonly string[],
): { ok: true; payload: string; list: RevocationList } | { ok: false; reason: string } {
  if (serials.length > MAX_REVOKED_CERTIFICATES) {
    return {
      ok: false,
      reason:
        `${serials.length} revoked certificates exceed the ${MAX_REVOKED_CERTIFICATES} the revocation list can carry ` +
        '(schemas/limits.ts MAX_REVOKED_CERTIFICATES); the broker nodes keep the last list: replace the CA',
    };
  }
  const list: RevocationList = { generatedAt: takenAt.toISOString(), serials: [...new Set(serials)].sort() };
  return { ok: true, payload: JSON.stringify(list), list };
}

export function startRevocationPublisher(options: RevocationPublisherOptions): RevocationPublisher {
  const { db, logger } = options;
  const fullCheckIntervalMs = options.fullCheckIntervalMs ?? 60_000;
  let lastSummary: string | undefined;
  let lastPublished: string | undefined;
  let lastFullCheckAt = 0;
  // a republish() asked for while a poll runs must not be answered by that poll's publish
  let wanted = 1;
  let publishedGeneration = 0;
  let failing = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const poll = async () => {
    const generation = wanted;
    const mustPublish = publishedGeneration < generation;
    const summary = await revocationSummary(db, options.retry);
    const summaryKey = `${summary.count}/${summary.latest?.getTime() ?? '-'}`;
    const now = Date.now();
    if (!mustPublish && summaryKey === lastSummary && now - lastFullCheckAt < fullCheckIntervalMs) return;
    const snapshot = await revocationSnapshot(db, options.retry);
    lastFullCheckAt = now;
    const content = snapshot.serials.join(',');
    if (!mustPublish && content === lastPublished) {
      lastSummary = summaryKey;
      return;
    }
    const built = revocationListPayload(snapshot.takenAt, snapshot.serials);
    if (!built.ok) {
      if (summaryKey !== lastSummary) logger.error({ count: snapshot.serials.length }, built.reason);
      lastSummary = summaryKey;
      return;
    }
    await options.publish(built.payload);
    lastSummary = summaryKey;
    lastPublished = content;
    publishedGeneration = generation;
    options.onPublished?.(built.list.serials.length);
    logger.info({ count: built.list.serials.length, generatedAt: built.list.generatedAt }, 'revocation list published');
  };

  const tick = () => {
    timer = undefined;
    if (closed || running) return;
    running = poll()
      .then(() => {
        if (failing) logger.info('revocation list publishing recovered');
        failing = false;
      })
      .catch((error: unknown) => {
        if (!failing) logger.warn({ err: error }, 'cannot publish the revocation list; retrying every poll');
        failing = true;
      })
      .finally(() => {
        running = undefined;
        if (!closed) timer = setTimeout(tick, options.pollIntervalMs);
      });
  };
  tick();

  return {
    republish() {
      wanted += 1;
      if (timer !== undefined && !running) {
        clearTimeout(timer);
        tick();
      }
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
