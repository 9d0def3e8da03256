/**
 * Certificate revocation on a broker node (G9: an identity that is revoked is refused everywhere
 * within seconds). The decisions are ./revocation-list.ts; this file wires them to aedes.
 *
 * The broker has no database. The revocation list lives in the control plane's table
 * revoked_certificates (written by `npm run certs -- revoke`); the bridge polls it every second and
 * publishes the complete list, retained, on control/revocations (bridge/revocation-publisher.ts).
 * Only the service role may publish there and no client may subscribe to it (./acl.ts). Each node:
 *
 * - subscribes to the topic internally (aedes.subscribe: straight on the message bus, no client,
 *   no ACL). In cluster mode the bus is mqemitter-redis, so a list the bridge publishes through any
 *   node reaches every node through Redis pub/sub;
 * - reads the retained copy at start (aedes persistence createRetainedStream: Redis in cluster mode)
 *   and again every 30 s, which heals a node that missed a live message (its Redis subscription was
 *   down) and, in standalone mode, finds the list the bridge publishes again when it reconnects
 *   after the broker restarted;
 * - optionally reads a CRL file at start (BROKER_CRL_FILE, checked against the CA by
 *   certs/crl.ts readCrl), so that revocations hold from the first connection even while the
 *   bridge is down and, standalone, nothing is retained yet. Its serials stay revoked.
 *
 * Enforcement: authenticate refuses a revoked certificate with CONNACK 5 (./authorization-hooks.ts,
 * refused_connections{reason="revoked"}); every authenticated client is tracked with its
 * certificate serial (node:tls getPeerCertificate().serialNumber, taken at CONNECT), and when a
 * list adds serials, the node closes the live connections that use them
 * (disconnects{reason="revoked"}, log line "certificate revoked: disconnecting the client"). A
 * revoked client's will is not published (./authorization-hooks.ts). The check at CONNECT and the
 * tracking happen in the same synchronous step, so no list applied in between can be missed.
 */
import type { Aedes, Client } from 'aedes';
import type { Logger } from '../common/logger.js';
import { CONTROL_REVOCATIONS_TOPIC } from '../schemas/topics.js';
import { checkRevocationListPayload } from '../schemas/validators.js';
import type { ClientIdentity } from './identity.js';
import type { BrokerMetrics } from './metrics.js';
import { RevokedSerials } from './revocation-list.js';

const DEFAULT_REFRESH_INTERVAL_MS = 30_000;

export interface RevocationSyncOptions {
  logger: Logger;
  metrics: BrokerMetrics;
  /** serials from a CRL file read at start (certs/crl.ts readCrl), with the file for the log */
  crl?: { source: string; serials: string[] };
  /** how often the retained list is read again; default 30 s */
  refreshIntervalMs?: number;
}

export interface RevocationSync {
  isRevoked(serial: string | undefined): boolean;
  /** Remembers an authenticated client with its identity, until its connection closes. */
  track(client: Client, identity: ClientIdentity): void;
  /** Subscribes to control/revocations and reads the retained list. */
  start(aedes: Aedes): Promise<void>;
  close(): void;
  /** revoked serials in force */
  size(): number;
  /** generatedAt of the published list in force (ms), undefined before the first */
  publishedAtMs(): number | undefined;
}

interface RetainedSource {
  createRetainedStream(pattern: string): AsyncIterable<{ payload?: Buffer | string }>;
}

export function createRevocationSync(options: RevocationSyncOptions): RevocationSync {
  const { logger, metrics } = options;
  const serials = new RevokedSerials();
  const tracked = new Map<Client, ClientIdentity>();
  let refreshTimer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;

  if (options.crl !== undefined) {
    serials.setFileSerials(options.crl.serials);
    logger.info(
      { file: options.crl.source, count: options.crl.serials.length },
      'revocation list loaded from the CRL file',
    );
  }

  const closeRevokedClients = () => {
    for (const [client, identity] of tracked) {
      if (client.closed || !serials.has(identity.serial)) continue;
      logger.warn(
        { clientId: client.id, role: identity.role, serial: identity.serial },
        'certificate revoked: disconnecting the client',
      );
      metrics.disconnects.inc({ reason: 'revoked' });
      tracked.delete(client);
      client.close();
    }
  };

  const apply = (payload: Buffer | string | undefined, source: 'live' | 'retained') => {
    const checked = checkRevocationListPayload(payload ?? '');
    if (!checked.ok) {
      logger.error({ source, reason: checked.reason }, 'revocation list ignored: unreadable');
      return;
    }
    const outcome = serials.apply(checked.value);
    if (!outcome.applied) {
      logger.debug({ source, reason: outcome.reason }, 'revocation list ignored: older than the one in force');
      return;
    }
    const level = outcome.added.length + outcome.removed.length > 0 ? 'info' : 'debug';
    logger[level](
      {
        source,
        generatedAt: checked.value.generatedAt,
        count: outcome.count,
        added: outcome.added.length,
        removed: outcome.removed.length,
      },
      'revocation list applied',
    );
    if (outcome.added.length > 0) closeRevokedClients();
  };

  const readRetained = async (aedes: Aedes) => {
    const persistence = (aedes as unknown as { persistence?: Partial<RetainedSource> }).persistence;
    if (typeof persistence?.createRetainedStream !== 'function') {
      logger.error('cannot read the retained revocation list (the persistence has no createRetainedStream)');
      return;
    }
    for await (const packet of persistence.createRetainedStream(CONTROL_REVOCATIONS_TOPIC)) {
      apply(packet.payload, 'retained');
    }
  };

  return {
    isRevoked: (serial) => serials.has(serial),
    track(client, identity) {
      if (identity.serial === undefined) return;
      tracked.set(client, identity);
      client.conn.once('close', () => tracked.delete(client));
    },
    async start(aedes) {
      const deliver = (packet: { payload?: Buffer | string }, callback: () => void) => {
        apply(packet.payload, 'live');
        callback();
      };
      await new Promise<void>((resolve) => aedes.subscribe(CONTROL_REVOCATIONS_TOPIC, deliver, resolve));
      unsubscribe = () => aedes.unsubscribe(CONTROL_REVOCATIONS_TOPIC, deliver, () => undefined);
      await readRetained(aedes);
      const refreshIntervalMs = options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS;
      refreshTimer = setInterval(() => {
        readRetained(aedes).catch((error: unknown) =>
          logger.warn({ err: error }, 'cannot read the retained revocation list; keeping the one in force'),
        );
      }, refreshIntervalMs);
      refreshTimer.unref();
    },
    close() {
      clearInterval(refreshTimer);
      unsubscribe?.();
      tracked.clear();
    },
    size: () => serials.size,
    publishedAtMs: () => serials.publishedAtMs,
  };
}
