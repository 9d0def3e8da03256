/**
 * Applies ./publish-rate-limit.ts to aedes (G7): a client over its publish rate is slowed by
 * holding back the authorizePublish callback of its publishes, and disconnected when it stays
 * over. Logged (clientId, limits, rates) and counted (mqtt_broker_throttled_publishes_total,
 * mqtt_broker_throttle_delay_seconds_total, mqtt_broker_throttled_clients,
 * mqtt_broker_disconnects_total{reason="rate-limit"}).
 *
 * Why holding the callback back slows only that client (aedes 1.2.0, verified in its source):
 * - lib/handlers/publish.js runs authorizePublish, then enqueuePublish, which writes the PUBACK
 *   of a QoS 1 publish and only then routes it (broker.publish). A held-back callback therefore
 *   holds back the PUBACK, and a client with a bounded in-flight window (the edge agent: 4
 *   batches; mosquitto and paho: 20 messages) stops sending.
 * - lib/client.js reads the socket in batches: `nextBatch` reads the next chunk only when every
 *   packet of the current chunk has called back (`_parsingBatch` reaches 0). A held-back publish
 *   keeps that client's socket unread, so a client that does not wait for PUBACKs fills its own
 *   TCP window instead of the broker's memory (measured with a plain aedes: one socket chunk,
 *   about 64 KiB of packets, is held at a time; Node.js' 'readable' events let a few more through).
 * - Nothing here blocks the event loop or another client's socket: the wait is a timer per client.
 *
 * Held-back publishes are released in arrival order by one timer per client. When the client
 * disconnects, they are dropped without calling back: never acknowledged, never routed (a QoS 1
 * client sends them again on its next connection). A disconnected flooder's will fires as for any
 * dropped connection.
 *
 * The limits belong to the identity (clientId = certificate CN, ./identity.ts), not to the
 * connection: a reconnect resumes the token buckets where the last connection left them (the
 * dropped publishes' cost given back, since they were never routed). Keyed by connection, a
 * device disconnected for flooding came back at once with a full burst (8 MiB by default) and a
 * fresh 10 s: npm run bench:fairness showed the other device's slowest sync/acks right after each
 * such reconnect. An identity with no connection left is forgotten once its buckets are full
 * again (swept at most every SWEEP_INTERVAL_MS, when a connection publishes for the first time),
 * so the state is bounded by the connected identities plus those that left within about
 * burst/rate + SWEEP_INTERVAL_MS (and in all by the certificates issued: clientId = CN).
 * The state is per broker node: a device that reconnects to another node starts there with that
 * node's state of it (fresh if it never published there).
 *
 * Only publishes read from the client's socket are limited: aedes also calls authorizePublish for
 * wills (lib/client.js close, aedes.js _clearWills; ./authorization-hooks.ts isWillPublish), which
 * are never held back.
 */
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from '../common/logger.js';
import { isLatePublish, isWillPublish } from './authorization-hooks.js';
import type { ClientRole } from './identity.js';
import type { BrokerMetrics } from './metrics.js';
import { episodeRates, PublishRateLimiter, type PublishRateLimits } from './publish-rate-limit.js';

type Callback = (error?: Error | null) => void;

export interface PublishThrottleOptions {
  limits: PublishRateLimits;
  logger: Logger;
  metrics: BrokerMetrics;
  /** the role of an authenticated client; clients of the service role are not limited */
  roleOf(client: Client): ClientRole | undefined;
  /** default Date.now */
  now?: () => number;
}

export interface PublishThrottle {
  /** Calls back (null) at once, later, or never (when it disconnects the client). */
  authorize(client: Client | null, packet: PublishPacket, callback: Callback): void;
  /** Clients currently over their limit. */
  throttledClients(): number;
  /** Identities whose limits are kept (connected, or disconnected with buckets not yet full again). */
  trackedIdentities(): number;
}

interface Held {
  releaseAtMs: number;
  payloadBytes: number;
  callback: Callback;
}

/** One identity (clientId), across its connections. */
interface IdentityState {
  limiter: PublishRateLimiter;
  connections: number;
}

/** One connection of an identity. */
interface ClientState {
  identity: IdentityState;
  held: Held[];
  timer: NodeJS.Timeout | undefined;
  closed: boolean;
}

/** How often, at most, identities without a connection are looked at for forgetting. */
export const SWEEP_INTERVAL_MS = 10_000;

export function createPublishThrottle(options: PublishThrottleOptions): PublishThrottle {
  const { limits, logger, metrics } = options;
  const now = options.now ?? Date.now;
  const states = new WeakMap<Client, ClientState>();
  const identities = new Map<string, IdentityState>();
  const throttled = new Set<ClientState>();
  let sweptAtMs = now();

  /** Forgets the identities without a connection whose buckets are full again (a fresh limiter decides the same). */
  const sweep = (at: number) => {
    if (at - sweptAtMs < SWEEP_INTERVAL_MS) return;
    sweptAtMs = at;
    for (const [clientId, identity] of identities) {
      if (identity.connections === 0 && identity.limiter.rested(at)) identities.delete(clientId);
    }
  };

  const stateOf = (client: Client): ClientState => {
    let state = states.get(client);
    if (state === undefined) {
      const at = now();
      sweep(at);
      let identity = identities.get(client.id);
      if (identity === undefined) {
        identity = { limiter: new PublishRateLimiter(limits, at), connections: 0 };
        identities.set(client.id, identity);
      }
      identity.connections += 1;
      const created: ClientState = { identity, held: [], timer: undefined, closed: false };
      client.conn.once('close', () => forget(created));
      states.set(client, created);
      state = created;
    }
    return state;
  };

  /** The connection is gone: its held publishes are dropped and their cost given back to the identity. */
  const forget = (state: ClientState, alsoUnrouted = { messages: 0, bytes: 0 }) => {
    if (state.closed) return;
    state.closed = true;
    clearTimeout(state.timer);
    state.timer = undefined;
    const heldBytes = state.held.reduce((sum, held) => sum + held.payloadBytes, 0);
    state.identity.limiter.connectionClosed(
      now(),
      state.held.length + alsoUnrouted.messages,
      heldBytes + alsoUnrouted.bytes,
    );
    state.identity.connections -= 1;
    state.held = [];
    throttled.delete(state);
  };

  const release = (state: ClientState) => {
    state.timer = undefined;
    if (state.closed) return;
    const at = now();
    while (state.held.length > 0 && (state.held[0] as Held).releaseAtMs <= at) {
      (state.held.shift() as Held).callback(null);
    }
    schedule(state);
  };

  const schedule = (state: ClientState) => {
    const head = state.held[0];
    if (head === undefined || state.timer !== undefined) return;
    state.timer = setTimeout(() => release(state), Math.max(0, head.releaseAtMs - now()));
  };

  const authorize = (client: Client | null, packet: PublishPacket, callback: Callback) => {
    if (client === null || isWillPublish(client, packet)) return callback(null);
    // handled after its connection closed (the ACL drops these first): never acknowledged nor
    // routed, and never counted against a connection that is gone
    if (isLatePublish(client, packet)) return;
    const role = options.roleOf(client);
    if (role === undefined || role === 'service') return callback(null);

    const state = stateOf(client);
    const at = now();
    const payloadBytes = byteLength(packet.payload);
    const decision = state.identity.limiter.decide(at, payloadBytes);
    if (decision.action === 'pass') {
      throttled.delete(state);
      if (state.held.length === 0) return callback(null);
      // a timer that fired late must not let this one overtake the held ones
      state.held.push({ releaseAtMs: at, payloadBytes, callback });
      return schedule(state);
    }

    const limitFields = {
      messagesPerSecondLimit: limits.messages.perSecond,
      bytesPerSecondLimit: limits.bytes.perSecond,
    };
    if (decision.action === 'disconnect') {
      const rates = episodeRates(decision.episode, at);
      logger.warn(
        {
          clientId: client.id,
          role,
          throttledForMs: at - decision.episode.sinceMs,
          wouldWaitMs: Math.round(decision.delayMs),
          ...rates,
          ...limitFields,
          maxThrottledMs: limits.maxThrottledMs,
        },
        'publish rate over the limit for too long: disconnecting the client',
      );
      metrics.disconnects.inc({ reason: 'rate-limit' });
      forget(state, { messages: 1, bytes: payloadBytes }); // this publish is not routed either
      client.close();
      return;
    }

    throttled.add(state);
    metrics.throttledPublishes.inc({ role });
    metrics.throttleDelaySeconds.inc({ role }, decision.delayMs / 1000);
    if (decision.started) {
      logger.info(
        { clientId: client.id, role, ...limitFields },
        'publish rate over the limit: slowing the client down',
      );
    }
    logger.debug({ clientId: client.id, delayMs: Math.round(decision.delayMs), payloadBytes }, 'publish delayed');
    state.held.push({ releaseAtMs: at + decision.delayMs, payloadBytes, callback });
    schedule(state);
  };

  return { authorize, throttledClients: () => throttled.size, trackedIdentities: () => identities.size };
}

function byteLength(payload: Buffer | string | undefined): number {
  if (payload === undefined) return 0;
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
}
