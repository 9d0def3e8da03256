/**
 * The aedes hooks that enforce identity and topic permissions. The decisions themselves are pure
 * (./identity.ts, ./acl.ts); this file wires them to aedes, logs every refusal with its reason and
 * counts it.
 *
 *   preConnect        identity from the TLS client certificate + clientId, and the CONNECT's will;
 *                     the keepalive the broker applies (./keepalive-policy.ts: 0 or above the limit
 *                     becomes the limit, never CONNACK 6); SUBACKs report QoS 1 (./subscribe-qos.ts)
 *   authenticate      refuses with CONNACK 5 (not authorized) when preConnect found a problem
 *   authorizePublish  denied → error → aedes closes the connection (MQTT 3.1.1 has no PUBACK error);
 *                     allowed but with a refused payload (./publish-content.ts) → dropped, see below
 *   authorizeSubscribe denied → negated → SUBACK 128, the connection stays; granted at QoS 1; a
 *                     denied filter found in a persistent session (stored by an older broker) is
 *                     removed from it
 *   authorizeForward  denied → the message is not delivered (second line of defence)
 *   grantedQos        what ./session-subscriptions.ts lets a persistent session store
 *
 * Dropping a publish. aedes 1.2.0 lib/handlers/publish.js has two outcomes for authorizePublish:
 * an error ends the connection (runSeries → client._nextBatch(err) → 'error' → _onError destroys
 * the socket), and `callback(null)` lets enqueuePublish PUBACK the packet and then route it
 * (storeRetained, enqueueOffline, mq.emit in aedes.js). There is no "acknowledge but do not route".
 * MQTT 3.1.1 allows either a positive acknowledgement or closing the connection for a publish the
 * server does not authorize ([MQTT-3.3.5-2]). A bad payload is not a permission problem, and
 * closing would hurt the device more than the payload does (a device whose clock runs ahead would
 * be disconnected on every `online` status, with its telemetry), so the packet is acknowledged and
 * re-addressed before routing: topic BROKER_DISCARD_TOPIC ('$discarded', no subscriber can match
 * it) and retain false, then `callback(null)`. The same holds for wills: a will that fails the check
 * is re-addressed too (aedes.js _clearWills turns an authorizePublish error for a stored will into
 * an 'error' event on the broker). Every drop is logged with its reason and counted
 * (mqtt_broker_dropped_publishes_total{kind}).
 */
import type { TLSSocket } from 'node:tls';
import type { AedesOptions, AuthenticateError, Client, ConnectPacket, PublishPacket } from 'aedes';
import type { Logger } from '../common/logger.js';
import {
  decideDelivery,
  decidePublish,
  decideStoredWillPublish,
  decideSubscribe,
  REQUIRED_QOS,
  type AclDecision,
  type AclLimits,
  type PublishRequest,
} from './acl.js';
import { BROKER_DISCARD_TOPIC, CONTROL_REVOCATIONS_TOPIC } from '../schemas/topics.js';
import { identifyClient, type ClientIdentity, type IdentityDecision, type PeerCertificateLike } from './identity.js';
import { serverKeepaliveSeconds } from './keepalive-policy.js';
import { roleLabel, type BrokerMetrics } from './metrics.js';
import { decidePublishContent } from './publish-content.js';
import type { RevocationSync } from './revocation-sync.js';
import type { GrantedQos } from './session-subscriptions.js';
import { grantQosInSuback } from './subscribe-qos.js';

type Hook<Name extends keyof AedesOptions> = NonNullable<AedesOptions[Name]>;

export interface AuthorizationHooks {
  preConnect: Hook<'preConnect'>;
  authenticate: Hook<'authenticate'>;
  authorizePublish: Hook<'authorizePublish'>;
  authorizeSubscribe: Hook<'authorizeSubscribe'>;
  authorizeForward: Hook<'authorizeForward'>;
  grantedQos: GrantedQos;
  /** the verified identity of an authenticated client */
  identityOf(client: Client): ClientIdentity | undefined;
}

export interface AuthorizationHooksOptions {
  logger: Logger;
  metrics: BrokerMetrics;
  limits: AclLimits;
  /** largest keepalive (seconds) a connection keeps; 0 and larger requests get this one */
  keepaliveLimitSeconds: number;
  /** the clock for payload checks (ms since the epoch); default Date.now */
  now?: () => number;
  /** aedes' persistence, once it exists (aedes 1.2.0 types it as any and does not declare it on Aedes) */
  persistence?: () => unknown;
  /** certificate revocation (./revocation-sync.ts); nothing is revoked when omitted */
  revocations?: Pick<RevocationSync, 'isRevoked' | 'track'>;
}

type ConnectDecision = IdentityDecision | { ok: false; code: 'will-denied' | 'revoked'; reason: string };

const NOT_AUTHORIZED = 5;
const NO_VERIFIED_IDENTITY: AclDecision = { allowed: false, reason: 'the client has no verified identity' };
const REVOKED: AclDecision = { allowed: false, reason: 'the client certificate is revoked' };

/**
 * Whether aedes asks about a will rather than a PUBLISH read from the client's socket: aedes 1.2.0
 * authorizes a will when the client's connection closes (lib/client.js close → finish: it passes
 * `client.will` itself, and clears it only after this synchronous hook returned), and a will
 * stored by a node that died (aedes.js _clearWills: the client is null, or a newer connection of
 * that clientId). Every stored will carries the `brokerId` its node stored it under (persistence
 * putWill); a PUBLISH from the parser has none.
 *
 * Not `client.closed`: aedes goes on handling the PUBLISH packets it had queued (lib/client.js
 * dequeue) after close() set it, so "closed" also matched up to a socket chunk of a client's own
 * publishes, which then skipped the rate limit and were routed (found by an independent review:
 * 14 of 40 routed after a denied publish closed the connection). See isLatePublish.
 */
export function isWillPublish(client: Client | null, packet: PublishPacket): boolean {
  return (
    client === null ||
    packet === (client as { will?: unknown }).will ||
    (packet as { brokerId?: unknown }).brokerId !== undefined
  );
}

/** A PUBLISH of the client's own that aedes handles after the connection was closed (not its will). */
export function isLatePublish(client: Client | null, packet: PublishPacket): boolean {
  return client !== null && client.closed && !isWillPublish(client, packet);
}

/** Re-addresses a publish so that aedes acknowledges it but routes it to no one (see the header). */
function discard(packet: PublishPacket): void {
  packet.topic = BROKER_DISCARD_TOPIC;
  packet.retain = false;
}

export function createAuthorizationHooks({
  logger,
  metrics,
  limits,
  keepaliveLimitSeconds,
  now = Date.now,
  persistence = () => undefined,
  revocations,
}: AuthorizationHooksOptions): AuthorizationHooks {
  const connectDecisions = new WeakMap<Client, ConnectDecision>();
  const identities = new WeakMap<Client, ClientIdentity>();
  let warnedSubackUnfixable = false;

  const preConnect: Hook<'preConnect'> = (client, packet, callback) => {
    connectDecisions.set(client, decideConnect(client, packet, limits));
    const keepalive = serverKeepaliveSeconds(packet.keepalive, keepaliveLimitSeconds);
    if (keepalive !== packet.keepalive) {
      logger.debug(
        { clientId: packet.clientId, requested: packet.keepalive, applied: keepalive },
        'keepalive replaced by the broker limit',
      );
      // read by aedes after preConnect (init's keepaliveLimit check, setKeepAlive's timer)
      packet.keepalive = keepalive;
    }
    if (!grantQosInSuback(client, REQUIRED_QOS) && !warnedSubackUnfixable) {
      warnedSubackUnfixable = true;
      logger.error('cannot make SUBACKs report the granted QoS (aedes internals changed); they echo the requested QoS');
    }
    callback(null, true);
  };

  const authenticate: Hook<'authenticate'> = (client, _username, _password, done) => {
    let decision = connectDecisions.get(client) ?? {
      ok: false,
      code: 'no-certificate',
      reason: 'no identity check ran for this connection',
    };
    connectDecisions.delete(client);
    // G9: checked here, not in preConnect, and tracked in the same step below: a revocation list
    // applied in between would otherwise miss this connection
    if (decision.ok && revocations?.isRevoked(decision.identity.serial)) {
      decision = {
        ok: false,
        code: 'revoked',
        reason: `the client certificate (serial ${decision.identity.serial}) is revoked`,
      };
    }
    if (!decision.ok) {
      logger.warn(
        { clientId: client.id, remoteAddress: remoteAddressOf(client), code: decision.code, reason: decision.reason },
        'connection refused',
      );
      metrics.refusedConnections.inc({ reason: decision.code });
      const error = Object.assign(new Error(`not authorized: ${decision.reason}`), {
        returnCode: NOT_AUTHORIZED,
      }) as AuthenticateError;
      done(error, null);
      return;
    }
    identities.set(client, decision.identity);
    revocations?.track(client, decision.identity);
    logger.info({ clientId: client.id, role: decision.identity.role }, 'client authenticated');
    done(null, true);
  };

  const authorizePublish: Hook<'authorizePublish'> = (client, packet, callback) => {
    // the connection is closed (a denied publish, the rate limit, a revocation): what it had sent
    // after that is neither acknowledged nor routed; a QoS 1 client sends it again when it is back
    if (isLatePublish(client, packet)) {
      metrics.droppedPublishes.inc({ kind: 'after-close' });
      return;
    }
    const request = publishRequestOf(packet);
    const identity = client ? identities.get(client) : undefined;
    let decision: AclDecision;
    if (client === null) decision = decideStoredWillPublish(request, limits);
    else if (identity === undefined) decision = NO_VERIFIED_IDENTITY;
    else if (revocations?.isRevoked(identity.serial)) decision = REVOKED;
    else decision = decidePublish(identity, request, limits);
    if (decision.allowed) {
      dropIfPayloadRefused(client, identity, packet);
      callback(null);
      return;
    }
    if (isWillPublish(client, packet)) {
      // never an error for a will: aedes.js _clearWills would turn it into an 'error' event on
      // the broker
      logger.warn(
        { clientId: client?.id ?? null, role: identity?.role, topic: request.topic, reason: decision.reason },
        'will dropped',
      );
      metrics.droppedPublishes.inc({ kind: 'will' });
      discard(packet);
      callback(null);
      return;
    }
    logger.warn(
      {
        clientId: client?.id ?? null,
        role: identity?.role,
        topic: request.topic,
        qos: request.qos,
        reason: decision.reason,
      },
      'publish denied, closing the connection',
    );
    metrics.deniedPublishes.inc({ role: roleLabel(identity?.role) });
    callback(new Error(`publish denied: ${decision.reason}`));
  };

  const authorizeSubscribe: Hook<'authorizeSubscribe'> = (client, subscription, callback) => {
    const identity = identities.get(client);
    const decision = identity === undefined ? NO_VERIFIED_IDENTITY : decideSubscribe(identity, subscription.topic);
    if (decision.allowed) {
      callback(null, { ...subscription, qos: decision.qos ?? subscription.qos });
      return;
    }
    logger.warn(
      { clientId: client.id, role: identity?.role, topicFilter: subscription.topic, reason: decision.reason },
      'subscription denied',
    );
    metrics.deniedSubscriptions.inc({ role: roleLabel(identity?.role) });
    // restoring a clean:false session at CONNECT (aedes connect.js restoreSubs runs before the
    // client is connected); a live SUBSCRIBE never stores a refused filter (grantedQos)
    if (!client.clean && !client.connected) forgetStoredSubscription(client, subscription.topic);
    callback(null, null);
  };

  /** Drops (see the header) a publish whose payload ./publish-content.ts refuses. */
  const dropIfPayloadRefused = (client: Client | null, identity: ClientIdentity | undefined, packet: PublishPacket) => {
    const content = decidePublishContent(packet.topic, packet.payload, now());
    if (content.accepted) return;
    logger.warn(
      {
        clientId: client?.id ?? null,
        role: identity?.role,
        topic: packet.topic,
        retain: packet.retain,
        reason: content.reason,
      },
      'publish dropped: payload refused',
    );
    metrics.droppedPublishes.inc({ kind: content.kind });
    discard(packet);
  };

  /**
   * A clean:false session restored from persistence can hold a filter this broker refuses (stored
   * by an aedes that kept the refused filters of a SUBSCRIBE, see ./session-subscriptions.ts);
   * while it is stored, messages for it are queued for the session. Removed when the restore
   * refuses it. (Not during a live SUBSCRIBE: aedes-persistence-redis 11 removeSubscriptions deletes
   * the session's queue when no subscription is left, racing the granted filters being stored.)
   */
  const forgetStoredSubscription = (client: Client, topicFilter: string) => {
    const store = persistence() as { removeSubscriptions?: unknown } | undefined;
    if (typeof store?.removeSubscriptions !== 'function') return;
    (store.removeSubscriptions as (client: Client, topics: string[]) => Promise<void>)
      .call(store, client, [topicFilter])
      .catch((error: unknown) =>
        logger.warn({ clientId: client.id, topicFilter, err: error }, 'cannot remove a refused stored subscription'),
      );
  };

  const grantedQos: GrantedQos = (client, subscription) => {
    const identity = identities.get(client);
    if (identity === undefined) return null;
    const decision = decideSubscribe(identity, subscription.topic);
    return decision.allowed ? (decision.qos ?? subscription.qos) : null;
  };

  const authorizeForward: Hook<'authorizeForward'> = (client, packet) => {
    const identity = identities.get(client);
    const decision = identity === undefined ? NO_VERIFIED_IDENTITY : decideDelivery(identity, packet.topic);
    if (decision.allowed) return packet;
    logger.warn(
      { clientId: client.id, role: identity?.role, topic: packet.topic, reason: decision.reason },
      'delivery withheld',
    );
    metrics.deniedDeliveries.inc({ role: roleLabel(identity?.role) });
    return null;
  };

  return {
    preConnect,
    authenticate,
    authorizePublish,
    authorizeSubscribe,
    authorizeForward,
    grantedQos,
    identityOf: (client) => identities.get(client),
  };
}

function decideConnect(client: Client, packet: ConnectPacket, limits: AclLimits): ConnectDecision {
  const socket = tlsSocketOf(client);
  const decision = identifyClient({
    certificate: socket ? (socket.getPeerCertificate() as PeerCertificateLike) : null,
    authorized: socket?.authorized ?? false,
    clientId: packet.clientId,
  });
  if (!decision.ok || !packet.will) return decision;
  const will = packet.will;
  if (will.topic === CONTROL_REVOCATIONS_TOPIC) {
    return { ok: false, code: 'will-denied', reason: `a will may not be published on '${will.topic}'` };
  }
  const willDecision = decidePublish(
    decision.identity,
    { topic: will.topic, qos: will.qos ?? 0, retain: will.retain ?? false, payloadBytes: byteLength(will.payload) },
    limits,
  );
  if (willDecision.allowed) return decision;
  return { ok: false, code: 'will-denied', reason: `the will message is not allowed: ${willDecision.reason}` };
}

function publishRequestOf(packet: PublishPacket): PublishRequest {
  return { topic: packet.topic, qos: packet.qos, retain: packet.retain, payloadBytes: byteLength(packet.payload) };
}

function byteLength(payload: Buffer | string | undefined): number {
  if (payload === undefined) return 0;
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
}

function tlsSocketOf(client: Client): TLSSocket | null {
  const conn = client.conn as Partial<TLSSocket>;
  return typeof conn.getPeerCertificate === 'function' ? (conn as TLSSocket) : null;
}

function remoteAddressOf(client: Client): string | undefined {
  return (client.conn as Partial<TLSSocket>).remoteAddress;
}
