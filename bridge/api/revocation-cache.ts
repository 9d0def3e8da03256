/**
 * The revoked serials the API's auth hook refuses (G9), read from the bridge's revocation data
 * (revoked_certificates, bridge/db/revocations.ts) every `pollIntervalMs` (REVOCATION_POLL_MS,
 * default 1 s, the same interval that feeds the broker nodes), so `certs revoke` reaches HTTP as
 * fast as MQTT. The first load completes before the API listens; a failed poll keeps the last
 * list (logged) and the next poll tries again.
 */
import type { Logger } from '../../common/logger.js';
import type { Database } from '../db/connection.js';
import { revocationSnapshot } from '../db/revocations.js';

export interface RevocationCache {
  isRevoked(serial: string): boolean;
  /** reads the list now (tests, and the first load) */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export async function startRevocationCache(options: {
  db: Database;
  pollIntervalMs: number;
  logger: Logger;
}): Promise<RevocationCache> {
  let serials = new Set<string>();
  let polling: Promise<void> | undefined;
  const refresh = (): Promise<void> =>
    (polling ??= revocationSnapshot(options.db)
      .then((snapshot) => {
        serials = new Set(snapshot.serials);
      })
      .finally(() => {
        polling = undefined;
      }));
  await refresh();
  const timer = setInterval(() => {
    refresh().catch((error: unknown) =>
      options.logger.warn({ err: error }, 'REST API: revocation list not refreshed; keeping the last one'),
    );
  }, options.pollIntervalMs);
  timer.unref();
  let closing: Promise<void> | undefined;
  return {
    isRevoked: (serial) => serials.has(serial),
    refresh,
    close: () =>
      (closing ??= (async () => {
        clearInterval(timer);
        await polling?.catch(() => undefined);
      })()),
  };
}
