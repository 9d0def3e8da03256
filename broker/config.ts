/**
 * Broker process configuration from the environment.
 *
 *   BROKER_HOST          listen address (default 0.0.0.0)
 *   BROKER_PORT          MQTTS port (default 8883)
 *   BROKER_TLS_CERT      server certificate PEM (default certs/dev/broker.crt)
 *   BROKER_TLS_KEY       its private key PEM (default certs/dev/broker.key)
 *   BROKER_TLS_CA        CA that client certificates must chain to (default certs/dev/ca.crt)
 *   METRICS_PORT         serve /metrics and /healthz on this port (off when unset)
 *   METRICS_HOST         listen address of /metrics and /healthz (default 127.0.0.1: they have no
 *                        authentication; docker-compose sets 0.0.0.0 so that other containers can scrape)
 *   MAX_PAYLOAD_BYTES    largest accepted payload (default from schemas/limits.ts)
 *   BROKER_ID            standalone: the aedes broker id (default: a random UUID);
 *                        cluster: the node's name, see "Broker id" below (default: the host name)
 *   BROKER_REDIS_URL     cluster mode: redis://[[user]:password@]host[:port][/db] shared by all nodes
 *   BROKER_HEARTBEAT_MS  aedes heartbeat interval (default 15000 in cluster mode, aedes' 60000
 *                        standalone); a crashed node's wills fire 3-7 intervals after its last beat
 *   BROKER_RATE_MESSAGES_PER_S   publishes per second per device, across its connections (default 200)
 *   BROKER_RATE_MESSAGES_BURST   publishes a quiet device may send at once (default 400)
 *   BROKER_RATE_BYTES_PER_S      payload bytes per second per device, across its connections (default 4194304, 4 MiB)
 *   BROKER_RATE_BYTES_BURST      payload bytes a quiet device may send at once (default 1048576, 1 MiB)
 *   BROKER_RATE_MAX_THROTTLED_MS a device whose publishes keep waiting for longer is disconnected
 *                        (default 10000). Why these defaults: broker/publish-rate-limit.ts. The
 *                        service role is not limited.
 *   BROKER_CRL_FILE      a CRL (PEM or DER) signed by BROKER_TLS_CA, e.g. from `npm run certs -- crl`;
 *                        its certificates are refused from start, before the bridge has
 *                        published the revocation list (off when unset; broker/revocation-sync.ts)
 *   SHUTDOWN_GRACE_MS    how long SIGTERM waits for a clean close before exiting 1 (default 10000;
 *                        common/process-lifecycle.ts)
 *
 * Connection admission (broker/admission-policy.ts has the defaults and why; G7):
 *   BROKER_MAX_CONNECTIONS            sockets open on the MQTTS listener in any phase (default
 *                                     10000); keep the open-files limit (ulimit -n) above it
 *   BROKER_MAX_HANDSHAKES_PER_SOURCE  sockets from one address still in the TLS handshake (default 64)
 *   BROKER_HANDSHAKE_RATE             new TLS handshakes admitted per second on average (default 250);
 *                                     the excess is refused before TLS starts
 *   BROKER_HANDSHAKE_BURST            handshakes admitted at once after a quiet period (default 100)
 *   BROKER_MAX_EVENT_LOOP_LAG_MS      refuse new handshakes while the event loop is this far behind
 *                                     (default 1000)
 *   BROKER_HANDSHAKE_TARGET_MS        the admitted rate halves while handshakes take this long on average
 *                                     (default 2000)
 *   BROKER_LISTEN_BACKLOG             connections queued by the kernel before the broker accepts them
 *                                     (default 4096; Linux caps it at net.core.somaxconn)
 *   BROKER_HANDSHAKE_TIMEOUT_MS       time allowed for the TLS handshake; the socket is then destroyed
 *                                     (default 10000)
 *
 * Broker id in cluster mode. No session key depends on it: subscriptions and offline queues are
 * keyed by clientId only (client:<clientId>, outgoing:<clientId>), so a device resumes its session
 * on any node. What does depend on it is per-incarnation state: queued packets are stored as
 * packet:<brokerId>:<counter> with a counter that restarts at 0 with the process, and wills as
 * will:<brokerId>:<clientId>, fired by the other nodes once heartbeats from <brokerId> stop. A
 * node that came back under the same id would overwrite packets still queued for offline
 * sessions and would keep its previous life's wills from ever firing. So the id is not stable on
 * purpose: main.ts makes it `<BROKER_ID or host name>-<random>` at every start. BROKER_ID only has
 * to name the node for logs; it must not contain ':' (aedes-persistence-redis splits its keys on
 * ':') nor MQTT separators or wildcards (the id is a level of the $SYS heartbeat topics).
 */
import { readFileSync } from 'node:fs';
import { MAX_PAYLOAD_BYTES } from '../schemas/limits.js';
import { DEFAULT_PUBLISH_RATE_LIMITS, type PublishRateLimits } from './publish-rate-limit.js';
import { DEFAULT_ADMISSION_LIMITS, type AdmissionLimits } from './admission-policy.js';
import { ConfigError, envHost, envInt, envOptional, envString, redactUrlCredentials, type Env } from '../common/env.js';
import { shutdownGraceFromEnv } from '../common/process-lifecycle.js';
import type { TlsFileNames, TlsFilePaths } from '../common/tls-files.js';

/** MQTT's "remaining length" cannot exceed 268,435,455 bytes; leave room for the topic. */
const MQTT_MAX_PAYLOAD_BYTES = 268_435_455 - 65_539;

/** The variables error messages name when a TLS file cannot be read. */
export const BROKER_TLS_VARIABLES: TlsFileNames = {
  ca: 'BROKER_TLS_CA',
  cert: 'BROKER_TLS_CERT',
  key: 'BROKER_TLS_KEY',
};

const BROKER_ID_PATTERN = /^[A-Za-z0-9._-]{1,48}$/;
const DEFAULT_CLUSTER_HEARTBEAT_MS = 15_000;
const DEFAULT_REDIS_PORT = 6379;

export interface BrokerClusterConfig {
  /** as given (it may hold a password: never log it, log redisUrlForLogs) */
  redisUrl: string;
  redisUrlForLogs: string;
}

export interface BrokerConfig {
  host: string;
  port: number;
  /** read by main.ts with readTlsFiles(tls, BROKER_TLS_VARIABLES) */
  tls: TlsFilePaths;
  metricsPort: number | undefined;
  /** listen address of /metrics and /healthz: loopback unless METRICS_HOST says otherwise (no authentication there) */
  metricsHost: string;
  maxPayloadBytes: number;
  brokerId: string | undefined;
  /** set when BROKER_REDIS_URL is; standalone otherwise */
  cluster: BrokerClusterConfig | undefined;
  /** undefined: aedes' default */
  heartbeatMs: number | undefined;
  /** how long main.ts waits for close() after SIGTERM */
  shutdownGraceMs: number;
  publishRateLimits: PublishRateLimits;
  /** BROKER_CRL_FILE; read by main.ts with readCrlFile */
  crlPath: string | undefined;
  admission: AdmissionLimits;
  handshakeTimeoutMs: number;
  listenBacklog: number;
}

export function loadBrokerConfig(env: Env = process.env): BrokerConfig {
  const metricsPort = envOptional(env, 'METRICS_PORT');
  const redisUrl = envOptional(env, 'BROKER_REDIS_URL');
  const cluster =
    redisUrl === undefined ? undefined : { redisUrl, redisUrlForLogs: describeRedisEndpoint(parseRedisUrl(redisUrl)) };
  const heartbeatDefault = cluster === undefined ? undefined : DEFAULT_CLUSTER_HEARTBEAT_MS;
  const heartbeatRaw = envOptional(env, 'BROKER_HEARTBEAT_MS');
  return {
    host: envHost(env, 'BROKER_HOST', '0.0.0.0'),
    port: envInt(env, 'BROKER_PORT', 8883, { min: 0, max: 65_535 }),
    tls: {
      certPath: envString(env, 'BROKER_TLS_CERT', 'certs/dev/broker.crt'),
      keyPath: envString(env, 'BROKER_TLS_KEY', 'certs/dev/broker.key'),
      caPath: envString(env, 'BROKER_TLS_CA', 'certs/dev/ca.crt'),
    },
    metricsPort: metricsPort === undefined ? undefined : envInt(env, 'METRICS_PORT', 0, { min: 0, max: 65_535 }),
    metricsHost: envHost(env, 'METRICS_HOST', '127.0.0.1'),
    maxPayloadBytes: envInt(env, 'MAX_PAYLOAD_BYTES', MAX_PAYLOAD_BYTES, { min: 1, max: MQTT_MAX_PAYLOAD_BYTES }),
    brokerId: brokerIdFrom(env),
    cluster,
    // below ~1 s an event-loop stall of 3 intervals would make the other nodes fire this node's wills
    heartbeatMs:
      heartbeatRaw === undefined
        ? heartbeatDefault
        : envInt(env, 'BROKER_HEARTBEAT_MS', 0, { min: 1_000, max: 3_600_000 }),
    shutdownGraceMs: shutdownGraceFromEnv(env),
    publishRateLimits: publishRateLimitsFrom(env),
    crlPath: envOptional(env, 'BROKER_CRL_FILE'),
    admission: admissionFrom(env),
    handshakeTimeoutMs: envInt(env, 'BROKER_HANDSHAKE_TIMEOUT_MS', 10_000, { min: 1_000, max: 120_000 }),
    listenBacklog: envInt(env, 'BROKER_LISTEN_BACKLOG', 4096, { min: 1, max: 65_535 }),
  };
}

/** The CRL file's content; a ConfigError naming BROKER_CRL_FILE when it cannot be read. */
export function readCrlFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(`BROKER_CRL_FILE: cannot read '${path}': ${reason}`);
  }
}

const GIB = 1024 * 1024 * 1024;

function publishRateLimitsFrom(env: Env): PublishRateLimits {
  const defaults = DEFAULT_PUBLISH_RATE_LIMITS;
  return {
    messages: {
      perSecond: envInt(env, 'BROKER_RATE_MESSAGES_PER_S', defaults.messages.perSecond, { min: 1, max: 1_000_000 }),
      burst: envInt(env, 'BROKER_RATE_MESSAGES_BURST', defaults.messages.burst, { min: 1, max: 10_000_000 }),
    },
    bytes: {
      perSecond: envInt(env, 'BROKER_RATE_BYTES_PER_S', defaults.bytes.perSecond, { min: 1024, max: GIB }),
      burst: envInt(env, 'BROKER_RATE_BYTES_BURST', defaults.bytes.burst, { min: 1024, max: 16 * GIB }),
    },
    maxThrottledMs: envInt(env, 'BROKER_RATE_MAX_THROTTLED_MS', defaults.maxThrottledMs, { min: 100, max: 3_600_000 }),
  };
}

function admissionFrom(env: Env): AdmissionLimits {
  const defaults = DEFAULT_ADMISSION_LIMITS;
  return {
    maxConnections: envInt(env, 'BROKER_MAX_CONNECTIONS', defaults.maxConnections, { min: 1, max: 1_000_000 }),
    maxPendingPerSource: envInt(env, 'BROKER_MAX_HANDSHAKES_PER_SOURCE', defaults.maxPendingPerSource, {
      min: 1,
      max: 1_000_000,
    }),
    handshakesPerSecond: envInt(env, 'BROKER_HANDSHAKE_RATE', defaults.handshakesPerSecond, { min: 1, max: 1_000_000 }),
    handshakeBurst: envInt(env, 'BROKER_HANDSHAKE_BURST', defaults.handshakeBurst, { min: 1, max: 1_000_000 }),
    handshakeTargetMs: envInt(env, 'BROKER_HANDSHAKE_TARGET_MS', defaults.handshakeTargetMs, {
      min: 100,
      max: 120_000,
    }),
    maxEventLoopLagMs: envInt(env, 'BROKER_MAX_EVENT_LOOP_LAG_MS', defaults.maxEventLoopLagMs, {
      min: 1,
      max: 1_000_000,
    }),
  };
}

function brokerIdFrom(env: Env): string | undefined {
  const brokerId = envOptional(env, 'BROKER_ID');
  if (brokerId !== undefined && !BROKER_ID_PATTERN.test(brokerId)) {
    throw new ConfigError(
      `BROKER_ID must be 1-48 characters from A-Z a-z 0-9 . _ - ` +
        `(it is part of Redis keys split on ':' and of $SYS topics), got '${brokerId}'`,
    );
  }
  return brokerId;
}

// ---------------------------------------------------------------------------------------------
// Redis URL

export interface RedisEndpoint {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
}

const REDIS_URL_FORM = 'redis://[[user]:password@]host[:port][/db]';

/** Parses BROKER_REDIS_URL; a ConfigError that names the variable and never echoes a password. */
export function parseRedisUrl(raw: string, name = 'BROKER_REDIS_URL'): RedisEndpoint {
  const fail = (problem: string) =>
    new ConfigError(`${name} ${problem} (expected ${REDIS_URL_FORM}, got '${redactUrlCredentials(raw)}')`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fail('is not a valid URL');
  }
  if (url.protocol === 'rediss:') {
    throw fail('uses rediss://, but TLS to Redis is not supported yet: keep Redis on a private network');
  }
  if (url.protocol !== 'redis:') throw fail(`must use the redis:// scheme, not '${url.protocol.replace(/:$/, '')}'`);
  if (url.hostname === '') throw fail('has no host');
  if (url.search !== '' || url.hash !== '') throw fail('must not have query parameters or a fragment');
  const port = url.port === '' ? DEFAULT_REDIS_PORT : Number(url.port);
  if (port < 1) throw fail('has port 0');
  const dbMatch = /^\/?(\d*)$/.exec(url.pathname);
  if (dbMatch === null) throw fail(`has the path '${url.pathname}', but the only path allowed is a database number`);
  const db = dbMatch[1] === '' || dbMatch[1] === undefined ? 0 : Number(dbMatch[1]);
  if (!Number.isSafeInteger(db)) throw fail('has a database number that is too large');
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    db,
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
  };
}

/** redis://host:port/db with the credentials masked, for logs and errors. */
export function describeRedisEndpoint(endpoint: RedisEndpoint): string {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  const credentials = endpoint.username === undefined && endpoint.password === undefined ? '' : '***@';
  return `redis://${credentials}${host}:${endpoint.port}/${endpoint.db}`;
}
