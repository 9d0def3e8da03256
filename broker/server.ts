/**
 * One broker node: Aedes behind a mutual-TLS listener (TLS 1.3 only, client certificate required
 * and verified against the cluster CA). Identity and topic permissions: ./authorization-hooks.ts.
 *
 * Both listeners (MQTTS and the metrics endpoint) have an 'error' listener for as long as they
 * run: an 'error' event without one is thrown by Node.js as an uncaught exception and ends the
 * process, so one failed accept() would take down every connected device. Errors are logged with
 * their code and counted (mqtt_broker_listener_errors_total{listener,code}). Running out of file
 * descriptors does not reach this handler on Linux (checked with prlimit on Node.js 20: libuv
 * keeps a spare descriptor, accepts the connection with it and closes it at once, "EMFILE
 * trick", src/unix/stream.c); the errors that do (ENFILE without a spare descriptor, ENOBUFS,
 * ENOMEM, EPERM from a firewall hook) are just as rare, which is why the handler is tested by
 * emitting the event (tests/integration/broker-lifecycle.test.ts).
 *
 * Which connections may start a TLS handshake, the caps on open sockets and the handshake rate,
 * and the destruction of every socket whose handshake failed: ./connection-admission.ts (G7).
 */
import type { Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes } from 'aedes';
import { Registry } from 'prom-client';
import { healthRoute, metricsRoute, startHttpEndpoint, type HttpEndpoint } from '../common/http-endpoint.js';
import { createLogger, type Logger } from '../common/logger.js';
import type { TlsFiles } from '../common/tls-files.js';
import { readCrl } from '../certs/crl.js';
import { MAX_PAYLOAD_BYTES } from '../schemas/limits.js';
import type { AdmissionLimits } from './admission-policy.js';
import { createAuthorizationHooks } from './authorization-hooks.js';
import { admitConnections } from './connection-admission.js';
import { createBrokerMetrics, registerAdmissionGauges, type BrokerMetrics } from './metrics.js';
import { limitIncomingPacketSize, maxPacketBytesFor } from '../common/packet-size-guard.js';
import { DEFAULT_PUBLISH_RATE_LIMITS, type PublishRateLimits } from './publish-rate-limit.js';
import { createPublishThrottle, type PublishThrottle } from './publish-throttle.js';
import { createRevocationSync, type RevocationSync } from './revocation-sync.js';
import { storeOnlyGrantedSubscriptions } from './session-subscriptions.js';

/**
 * Cluster extension point: a cluster module builds a shared message bus and persistence (e.g.
 * ./cluster-backends.ts: mqemitter-redis and aedes-persistence-redis) and passes them here.
 * Standalone when omitted. startBroker owns what it is given: close() runs after aedes has closed
 * (or when startBroker fails), and isHealthy() is part of /healthz.
 */
export interface BrokerBackends {
  /** an mqemitter (aedes 1.2.0 types it as any) */
  mq?: unknown;
  /** an aedes persistence (aedes 1.2.0 types it as any) */
  persistence?: unknown;
  isHealthy?(): boolean;
  close?(): Promise<void>;
}

export interface BrokerOptions {
  /** the broker's server certificate and key, and the CA that client certificates must chain to */
  tls: TlsFiles;
  /** default 0.0.0.0 */
  host?: string;
  /** default 8883; 0 picks a free port (see RunningBroker.port) */
  port?: number;
  /** default MAX_PAYLOAD_BYTES (schemas/limits.ts) */
  maxPayloadBytes?: number;
  logger?: Logger;
  /** metrics are registered here (one broker per registry: the names are fixed); a new registry when omitted */
  registry?: Registry;
  /** serve GET /metrics and /healthz on this port (0 picks one); no HTTP endpoint when omitted */
  metricsPort?: number;
  /** default: host */
  metricsHost?: string;
  brokerId?: string;
  /** time allowed for the TLS handshake; default 10 s */
  handshakeTimeoutMs?: number;
  /** time allowed between the TLS handshake and CONNECT; default 10 s */
  connectTimeoutMs?: number;
  /**
   * largest keepalive (seconds) a connection keeps; a client asking for 0 (none) or more gets this
   * one, so a silent connection is closed after 1.5 × this (./keepalive-policy.ts); default 600
   */
  keepaliveLimitSeconds?: number;
  /** disconnect a client whose socket has not drained for this long; default 30 s */
  drainTimeoutMs?: number;
  /**
   * a CRL file (PEM or DER) signed by `tls.ca`, read at start: its serials are refused from the
   * first connection, before the bridge has published a revocation list (./revocation-sync.ts)
   */
  crl?: { source: string; content: Buffer };
  /** how often the retained revocation list is read again; default 30 s */
  revocationRefreshIntervalMs?: number;
  /** per-device publish rate limits (G7); default DEFAULT_PUBLISH_RATE_LIMITS (./publish-rate-limit.ts) */
  publishRateLimits?: PublishRateLimits;
  /** aedes heartbeat; in a cluster a crashed node's wills fire 3-7 of these after its last beat; default aedes' 60 s */
  heartbeatIntervalMs?: number;
  /** the listen queue (connections the kernel accepted before the broker did); default 4096 */
  listenBacklog?: number;
  /** connection caps and the handshake rate (./connection-admission.ts); defaults DEFAULT_ADMISSION_LIMITS */
  admission?: Partial<AdmissionLimits>;
  backends?: BrokerBackends;
}

export interface RunningBroker {
  host: string;
  port: number;
  aedes: Aedes;
  /** the mutual-TLS listener, for inspection; end it with close() */
  server: TlsServer;
  registry: Registry;
  metrics: BrokerMetrics;
  /** set when options.metricsPort was given */
  metricsPort: number | undefined;
  close(): Promise<void>;
}

const DEFAULT_PORT = 8883;
const DEFAULT_HOST = '0.0.0.0';

export async function startBroker(options: BrokerOptions): Promise<RunningBroker> {
  const logger = options.logger ?? createLogger('broker');
  const registry = options.registry ?? new Registry();
  const maxPayloadBytes = options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  const host = options.host ?? DEFAULT_HOST;

  const backends = options.backends;
  const closeBackends = () => closeBackendsQuietly(backends, logger);

  try {
    assertTlsMaterial(options.tls);
  } catch (error) {
    await closeBackends();
    throw error;
  }

  const aedesRef: { current?: Aedes } = {};
  let crlSerials: { source: string; serials: string[] } | undefined;
  try {
    crlSerials = readRevocationFile(options.crl, options.tls.ca);
  } catch (error) {
    await closeBackends();
    throw error;
  }

  const throttleRef: { current?: PublishThrottle } = {};
  const revocationsRef: { current?: RevocationSync } = {};
  const metrics = createBrokerMetrics(registry, {
    connectedClients: () => aedesRef.current?.connectedClients ?? 0,
    throttledClients: () => throttleRef.current?.throttledClients() ?? 0,
    revokedCertificates: () => revocationsRef.current?.size() ?? 0,
    revocationListGeneratedAt: () => revocationsRef.current?.publishedAtMs(),
  });
  // G9: revoked certificates refused at CONNECT and disconnected when revoked (./revocation-sync.ts)
  const revocations = (revocationsRef.current = createRevocationSync({
    logger,
    metrics,
    ...(crlSerials === undefined ? {} : { crl: crlSerials }),
    ...(options.revocationRefreshIntervalMs === undefined
      ? {}
      : { refreshIntervalMs: options.revocationRefreshIntervalMs }),
  }));
  const keepaliveLimitSeconds = options.keepaliveLimitSeconds ?? 600;
  const hooks = createAuthorizationHooks({
    logger,
    metrics,
    limits: { maxPayloadBytes },
    keepaliveLimitSeconds,
    persistence: () => (aedesRef.current as { persistence?: unknown } | undefined)?.persistence,
    revocations,
  });
  // G7: per-device publish rate limits, applied after the ACL allowed the publish
  const throttle = (throttleRef.current = createPublishThrottle({
    limits: options.publishRateLimits ?? DEFAULT_PUBLISH_RATE_LIMITS,
    logger,
    metrics,
    roleOf: (client) => hooks.identityOf(client)?.role,
  }));

  const aedes = await Aedes.createBroker({
    ...(options.brokerId === undefined ? {} : { id: options.brokerId }),
    ...(backends?.mq === undefined ? {} : { mq: backends.mq }),
    ...(backends?.persistence === undefined ? {} : { persistence: backends.persistence }),
    ...(options.heartbeatIntervalMs === undefined ? {} : { heartbeatInterval: options.heartbeatIntervalMs }),
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    // preConnect replaces a keepalive of 0 or above the limit by the limit (./keepalive-policy.ts),
    // so aedes never answers CONNACK 6, which MQTT 3.1.1 does not define
    keepaliveLimit: keepaliveLimitSeconds,
    drainTimeout: options.drainTimeoutMs ?? 30_000,
    // device ids are 36-character UUIDs; the default (23) would refuse them for MQTT 3.1 clients
    maxClientsIdLength: 64,
    // the contract's deepest topic has 5 levels
    maxTopicLevels: 16,
    preConnect: hooks.preConnect,
    authenticate: hooks.authenticate,
    authorizePublish: (client, packet, callback) =>
      hooks.authorizePublish(client, packet, (error) =>
        error ? callback(error) : throttle.authorize(client, packet, callback),
      ),
    authorizeSubscribe: hooks.authorizeSubscribe,
    authorizeForward: hooks.authorizeForward,
  }).catch(async (error: unknown) => {
    await closeBackends();
    throw error;
  });
  aedesRef.current = aedes;
  if (!storeOnlyGrantedSubscriptions((aedes as { persistence?: unknown }).persistence, hooks.grantedQos)) {
    logger.error('cannot filter the subscriptions persistent sessions store (the persistence has no addSubscriptions)');
  }
  announceAlive(aedes);
  observeAedes(aedes, logger);
  try {
    await revocations.start(aedes);
  } catch (error) {
    revocations.close();
    await closeAedes(aedes);
    await closeBackends();
    throw error;
  }

  const { server, sockets } = createMqttsServer(aedes, options, {
    logger,
    metrics,
    maxPacketBytes: maxPacketBytesFor(maxPayloadBytes),
  });

  try {
    await listen(server, host, options.port ?? DEFAULT_PORT, options.listenBacklog ?? DEFAULT_LISTEN_BACKLOG);
  } catch (error) {
    revocations.close();
    await closeAedes(aedes);
    await closeBackends();
    throw error;
  }
  const port = (server.address() as { port: number }).port;
  server.on('error', (error: NodeJS.ErrnoException) => {
    metrics.listenerErrors.inc({ listener: 'mqtts', code: error.code ?? 'unknown' });
    logger.error({ err: error, code: error.code }, `MQTT listener error (the broker keeps running): ${error.message}`);
  });

  let endpoint: HttpEndpoint | undefined;
  if (options.metricsPort !== undefined) {
    try {
      endpoint = await startHttpEndpoint({
        name: 'broker metrics endpoint',
        host: options.metricsHost ?? host,
        port: options.metricsPort,
        logger,
        onError: (error) => metrics.listenerErrors.inc({ listener: 'metrics', code: error.code ?? 'unknown' }),
        routes: {
          '/metrics': metricsRoute(registry),
          '/healthz': healthRoute(
            {
              listener: () => server.listening,
              aedes: () => !aedes.closed,
              backends: () => backends?.isHealthy?.() ?? true,
            },
            { body: (_results, healthy) => ({ status: healthy ? 'ok' : 'unavailable' }) },
          ),
        },
      });
    } catch (error) {
      revocations.close();
      await shutdown(server, aedes, sockets, undefined);
      await closeBackends();
      throw error;
    }
  }
  logger.info(
    { host, port, metricsPort: endpoint?.port, maxPayloadBytes, brokerId: aedes.id },
    'broker listening (MQTT over mutual TLS)',
  );

  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    aedes,
    server,
    registry,
    metrics,
    metricsPort: endpoint?.port,
    close() {
      revocations.close();
      closing ??= shutdown(server, aedes, sockets, endpoint)
        .then(closeBackends)
        .then(() => logger.info({ port }, 'broker closed'));
      return closing;
    },
  };
}

/** The serials of the CRL file, checked against the CA; fails early (before anything is started). */
function readRevocationFile(crl: BrokerOptions['crl'], ca: Buffer): { source: string; serials: string[] } | undefined {
  if (crl === undefined) return undefined;
  try {
    return { source: crl.source, serials: readCrl(crl.content, ca).serials };
  } catch (error) {
    throw new Error(`the CRL ${crl.source} is unusable: ${(error as Error).message}`, { cause: error });
  }
}

/** Fails early, before anything is started, when the key, certificate or CA cannot be used. */
function assertTlsMaterial(material: TlsFiles): void {
  try {
    createSecureContext({ key: material.key, cert: material.cert, ca: material.ca });
  } catch (error) {
    throw new Error(`the broker's TLS key, certificate or CA is unusable: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

interface MqttsServerContext {
  logger: Logger;
  metrics: BrokerMetrics;
  maxPacketBytes: number;
}

/** TLS 1.3 only; a client certificate signed by the CA is required before MQTT starts. */
function createMqttsServer(
  aedes: Aedes,
  options: BrokerOptions,
  { logger, metrics, maxPacketBytes }: MqttsServerContext,
): { server: TlsServer; sockets: ReadonlySet<Socket> } {
  let warnedGuardUnavailable = false;
  const server = createTlsServer(
    {
      key: options.tls.key,
      cert: options.tls.cert,
      ca: options.tls.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
      noDelay: true, // Nagle off (common/no-delay.ts)
    },
    (socket) => {
      const client = aedes.handle(socket);
      const guarded = limitIncomingPacketSize(client, maxPacketBytes, (error) => {
        metrics.oversizePackets.inc();
        logger.warn(
          { clientId: client.id, remoteAddress: socket.remoteAddress, reason: error.message },
          'packet too large, closing the connection',
        );
      });
      if (!guarded && !warnedGuardUnavailable) {
        warnedGuardUnavailable = true;
        logger.error(
          'cannot bound MQTT packet size at parse time (aedes internals changed); payload size is still checked after parsing',
        );
      }
    },
  );
  // G7: caps, handshake rate, every failed handshake's socket destroyed, every socket tracked
  const admitted = admitConnections(server, { limits: options.admission ?? {}, logger, metrics });
  registerAdmissionGauges(metrics.registry, {
    openSockets: () => admitted.sockets.size,
    pendingHandshakes: () => admitted.pendingHandshakes(),
    admittedRate: () => admitted.admittedRate(),
  });
  return { server, sockets: admitted.sockets };
}

/**
 * A first heartbeat now, before any client can connect. aedes sends its first one only a whole
 * interval after start, and until the other nodes of a cluster have seen one, they treat the wills
 * this node stores as orphaned and publish them while their devices are still connected.
 */
function announceAlive(aedes: Aedes): void {
  const topic = `$SYS/${aedes.id}/heartbeat`;
  aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(aedes.id), qos: 0, retain: false, dup: false }, () => {});
}

function observeAedes(aedes: Aedes, logger: Logger): void {
  aedes.on('clientError', (client, error) => {
    logger.info({ clientId: client.id, reason: error.message }, 'client connection closed after an error');
  });
  aedes.on('connectionError', (client, error) => {
    logger.info({ clientId: client.id, reason: error.message }, 'connection closed before the session was established');
  });
  aedes.on('keepaliveTimeout', (client) => {
    logger.info({ clientId: client.id }, 'keepalive timeout');
  });
  aedes.on('clientDisconnect', (client) => {
    logger.debug({ clientId: client.id }, 'client disconnected');
  });
}

async function shutdown(
  server: TlsServer,
  aedes: Aedes,
  sockets: ReadonlySet<Socket>,
  endpoint: HttpEndpoint | undefined,
): Promise<void> {
  const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
  await closeAedes(aedes);
  for (const socket of sockets) socket.destroy();
  await serverClosed;
  await endpoint?.close();
}

/** Errors are logged, not thrown: they must not hide the error that made startBroker fail. */
async function closeBackendsQuietly(backends: BrokerBackends | undefined, logger: Logger): Promise<void> {
  try {
    await backends?.close?.();
  } catch (error) {
    logger.error({ err: error }, 'error while closing the broker backends');
  }
}

function closeAedes(aedes: Aedes): Promise<void> {
  return new Promise((resolve) => aedes.close(() => resolve()));
}

/**
 * Connections the kernel completes and queues before the broker accepts them. node 20 defaults to
 * 511; in a reconnect storm thousands of SYNs arrive within a second, and every one beyond the
 * queue is dropped by Linux (TcpExtListenOverflows: 19,190 in 30 s with 3,000 devices) and
 * retried by the client's TCP after 1, 3, 7 s, so its 10 s connect timeout runs out before the
 * broker ever saw it, and it cannot be told to back off. Accepting is cheap (admission resets
 * what it does not admit right after accept), so a long queue drains quickly. Linux caps it at
 * net.core.somaxconn (4096 by default since 5.4).
 */
const DEFAULT_LISTEN_BACKLOG = 4096;

function listen(server: TlsServer, host: string, port: number, backlog: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(new Error(`broker cannot listen on ${host}:${port}: ${error.code ?? error.message}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen({ port, host, backlog }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
