/**
 * The aedes hooks that enforce identity and topic permissions. The decisions themselves are pure
 * (./identity.ts, ./acl.ts); this file wires them to aedes, logs every refusal with its reason and
 * counts it.
 *
 *   preConnect        identity from the TLS client certificate + clientId, and the CONNECT's will
 *   authenticate      refuses with CONNACK 5 (not authorized) when preConnect found a problem
 *   authorizePublish  denied → error → aedes closes the connection (MQTT 3.1.1 has no PUBACK error)
 *   authorizeSubscribe denied → negated → SUBACK 128, the connection stays; granted at QoS 1
 *   authorizeForward  denied → the message is not delivered (second line of defence)
 */
import type { TLSSocket } from 'node:tls';
import type { AedesOptions, AuthenticateError, Client, ConnectPacket, PublishPacket } from 'aedes';
import type { Logger } from '../common/logger.js';
import {
  decideDelivery,
  decidePublish,
  decideStoredWillPublish,
  decideSubscribe,
  type AclDecision,
  type AclLimits,
  type PublishRequest,
} from './acl.js';
import { identifyClient, type ClientIdentity, type IdentityDecision, type PeerCertificateLike } from './identity.js';
import { roleLabel, type BrokerMetrics } from './metrics.js';

type Hook<Name extends keyof AedesOptions> = NonNullable<AedesOptions[Name]>;

export interface AuthorizationHooks {
  preConnect: Hook<'preConnect'>;
  authenticate: Hook<'authenticate'>;
  authorizePublish: Hook<'authorizePublish'>;
  authorizeSubscribe: Hook<'authorizeSubscribe'>;
  authorizeForward: Hook<'authorizeForward'>;
  /** the verified identity of an authenticated client */
  identityOf(client: Client): ClientIdentity | undefined;
}

export interface AuthorizationHooksOptions {
  logger: Logger;
  metrics: BrokerMetrics;
  limits: AclLimits;
}

type ConnectDecision = IdentityDecision | { ok: false; code: 'will-denied'; reason: string };

const NOT_AUTHORIZED = 5;
const NO_VERIFIED_IDENTITY: AclDecision = { allowed: false, reason: 'the client has no verified identity' };

export function createAuthorizationHooks({ logger, metrics, limits }: AuthorizationHooksOptions): AuthorizationHooks {
  const connectDecisions = new WeakMap<Client, ConnectDecision>();
  const identities = new WeakMap<Client, ClientIdentity>();

  const preConnect: Hook<'preConnect'> = (client, packet, callback) => {
    connectDecisions.set(client, decideConnect(client, packet, limits));
    callback(null, true);
  };

  const authenticate: Hook<'authenticate'> = (client, _username, _password, done) => {
    const decision = connectDecisions.get(client) ?? {
      ok: false,
      code: 'no-certificate',
      reason: 'no identity check ran for this connection',
    };
    connectDecisions.delete(client);
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
    logger.info({ clientId: client.id, role: decision.identity.role }, 'client authenticated');
    done(null, true);
  };

  const authorizePublish: Hook<'authorizePublish'> = (client, packet, callback) => {
    const request = publishRequestOf(packet);
    const identity = client ? identities.get(client) : undefined;
    let decision: AclDecision;
    if (client === null) decision = decideStoredWillPublish(request, limits);
    else if (identity === undefined) decision = NO_VERIFIED_IDENTITY;
    else decision = decidePublish(identity, request, limits);
    if (decision.allowed) {
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
    callback(null, null);
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
