/**
 * Cluster mode: several broker nodes behind one load balancer share one Redis
 * (BROKER_REDIS_URL, broker/config.ts). Each node gets its own three connections:
 *
 *   mqemitter-redis (2 connections: publish + subscribe)  routes every message to every node
 *     through Redis pub/sub, so a subscriber on node B gets what a client published on node A;
 *     also carries aedes' $SYS heartbeats, births, "client X connected here" (the older connection
 *     of the same clientId on another node is closed) and subscription broadcasts.
 *   aedes-persistence-redis (1 connection)  retained messages, persistent sessions (subscriptions
 *     and offline queues of clean:false clients, keyed by clientId: a device may reconnect to any
 *     node), QoS 1/2 in-flight state and wills.
 *
 * Hazards:
 * - Wills of a crashed node are fired by the surviving nodes only after its heartbeats have been
 *   missing for 3 intervals, checked every 4 intervals: 3-7 × BROKER_HEARTBEAT_MS after its last one (default
 *   15 s, so 45-105 s). Every live node may fire the same will (duplicates are possible), and it
 *   fires even when the device has already reconnected to another node, so a stale
 *   `{online:false}` can overwrite a newer retained status: order status by its `at`.
 *   A clean shutdown (SIGTERM) closes the clients, so their wills fire at once.
 * - No MQTT 5 and no `$share`: every node delivers each message to every matching subscriber.
 *   Two bridge instances subscribed to devices/+/telemetry both get every batch. To scale the
 *   bridge out, partition devices: each instance subscribes to its own device ids (or a fixed
 *   hash range of the certificate CN / clientId) with its own clientId and clean:false session.
 * - Redis is a single point of failure: while it is unreachable publishes and subscriptions fail
 *   and /healthz reports unhealthy; run it with replication/persistence for production. Queued
 *   messages of clean:false sessions do not expire (no packetTTL): a device that never returns
 *   keeps its queue in Redis until its session is cleaned.
 * - Each start uses a fresh broker id (clusterBrokerId below): see broker/config.ts for why.
 * - Use every node with the same aedes and aedes-persistence-redis version: the key layouts differ
 *   between major versions.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Redis, RedisOptions } from 'ioredis';
import MQEmitterRedis from 'mqemitter-redis';
import type { Logger } from '../common/logger.js';
import { describeRedisEndpoint, parseRedisUrl, type RedisEndpoint } from './config.js';
import type { BrokerBackends } from './server.js';

export interface ClusterBackends extends Required<BrokerBackends> {
  /** redis://host:port/db, credentials masked */
  redis: string;
}

export interface RedisBackendsOptions {
  /** how long to wait for Redis at startup; default 10 s */
  connectTimeoutMs?: number;
  /** how long close() lets the connections finish gracefully; default 2 s */
  closeTimeoutMs?: number;
}

/** What is used here of aedes-persistence-redis (CommonJS, no types). */
interface RedisPersistence {
  setup(broker: unknown): Promise<void>;
  /** without a callback: a promise */
  destroy(): Promise<void>;
}
type RedisPersistenceFactory = (options: { conn: Redis; maxSessionDelivery?: number }) => RedisPersistence;

const requireHere = createRequire(import.meta.url);
// The package's main export, not its asyncPersistence.js: aedes 1.2 pipes the retained and
// offline-queue results (stream.pipe), and only the main export's adapter (aedes-persistence's
// CallBackPersistence) turns the async class' generators into streams. Its methods return
// promises when called without a callback, which is how aedes 1.x calls them.
// Exported for tests/unit/upstream-internals.test.ts, which checks these shapes on every upgrade.
export const createRedisPersistence = requireHere('aedes-persistence-redis') as RedisPersistenceFactory;
// the very ioredis the two packages use (package.json pins the same version, 5.11.1)
export const { Redis: RedisClient } = createRequire(requireHere.resolve('mqemitter-redis'))('ioredis') as {
  Redis: new (options: RedisOptions) => Redis;
};

const BROKER_ID_UNSAFE = /[^A-Za-z0-9._-]/g;

/**
 * The aedes id of this node for this start: `<name>-<8 hex>`, name = BROKER_ID or the host name.
 * Fresh at every start on purpose (packet and will keys in Redis are per broker id).
 */
export function clusterBrokerId(name: string = hostname()): string {
  const safe = name.replace(BROKER_ID_UNSAFE, '-').slice(0, 48) || 'broker';
  return `${safe}-${randomBytes(4).toString('hex')}`;
}

/**
 * Connects to Redis and builds the shared message bus and persistence for startBroker's
 * `backends`. Resolves once all three connections are ready; rejects with a clear error (and
 * nothing left open) when Redis does not answer in time. startBroker closes them with the broker.
 */
export async function createRedisBackends(
  url: string,
  logger: Logger,
  options: RedisBackendsOptions = {},
): Promise<ClusterBackends> {
  const endpoint = parseRedisUrl(url);
  const where = describeRedisEndpoint(endpoint);
  const log = logger.child({ redis: where });
  const connections = {
    publish: connect(endpoint, 'publish', log, { enableAutoPipelining: true }),
    subscribe: connect(endpoint, 'subscribe', log),
    persistence: connect(endpoint, 'persistence', log),
  };
  const all = Object.values(connections);
  const disconnectAll = () => all.forEach((connection) => connection.disconnect());

  try {
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    await Promise.all(all.map((connection) => waitUntilReady(connection, endpoint, where, timeoutMs)));
  } catch (error) {
    disconnectAll();
    throw error;
  }

  const closeTimeoutMs = options.closeTimeoutMs ?? 2_000;
  const mq = MQEmitterRedis({ pubConn: connections.publish, subConn: connections.subscribe });
  // mqemitter-redis 7.2.1 re-emits connection errors on its internal `state` emitter, and an
  // 'error' without a listener throws; connect() below already logs them
  (mq as unknown as { state: NodeJS.EventEmitter }).state.on('error', () => {});
  boundClose(mq, closeTimeoutMs, () => {
    connections.publish.disconnect();
    connections.subscribe.disconnect();
    log.warn({ closeTimeoutMs }, 'Redis did not confirm QUIT in time: connections dropped');
  });
  const persistence = createRedisPersistence({ conn: connections.persistence });
  log.info('cluster backends connected (mqemitter-redis, aedes-persistence-redis)');

  let closing: Promise<void> | undefined;
  const close = async () => {
    // destroy() unsubscribes from the bus and disconnects its connection; it throws when aedes
    // never called setup() (the broker failed to start), and waits forever while Redis is down
    const destroyed = await settleWithin(persistence.destroy(), closeTimeoutMs);
    if (destroyed !== 'done') log.debug({ outcome: destroyed }, 'persistence not destroyed cleanly');
    // aedes.close() has closed the bus already unless the broker failed to start
    await new Promise<void>((resolve) => mq.close(() => resolve()));
    disconnectAll();
    log.info('cluster backends closed');
  };

  return {
    redis: where,
    mq,
    persistence,
    isHealthy: () => all.every((connection) => connection.status === 'ready'),
    close: () => (closing ??= close()),
  };
}

/** One connection, logging the first error of an outage and the recovery (ioredis retries forever). */
function connect(endpoint: RedisEndpoint, role: string, log: Logger, extra: RedisOptions = {}): Redis {
  const connection = new RedisClient({
    host: endpoint.host,
    port: endpoint.port,
    db: endpoint.db,
    ...(endpoint.username === undefined ? {} : { username: endpoint.username }),
    ...(endpoint.password === undefined ? {} : { password: endpoint.password }),
    connectionName: `mqtt-broker-${role}`,
    ...extra,
  });
  let failing = false;
  let wasReady = false;
  connection.on('error', (error: Error) => {
    if (failing || !wasReady) return; // startup errors are reported by waitUntilReady
    failing = true;
    log.error({ connection: role, reason: error.message }, 'Redis connection lost; reconnecting');
  });
  connection.on('ready', () => {
    if (failing) log.info({ connection: role }, 'Redis connection restored');
    failing = false;
    wasReady = true;
  });
  return connection;
}

/** Errors that reconnecting cannot fix: fail at once instead of at the timeout. */
const FATAL_REDIS_ERROR = /^(WRONGPASS|NOAUTH|NOPERM)|AUTH|password/;

/**
 * Ready, and on the configured database: ioredis reports ready even when its SELECT failed (and
 * then uses database 0), so SELECT again and let an out-of-range index fail here.
 */
async function waitUntilReady(
  connection: Redis,
  endpoint: RedisEndpoint,
  where: string,
  timeoutMs: number,
): Promise<void> {
  if (connection.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      let lastError: Error | undefined;
      const finish = (error?: Error) => {
        clearTimeout(timer);
        connection.off('error', onError);
        connection.off('ready', onReady);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onError = (error: Error) => {
        lastError = error;
        if (!FATAL_REDIS_ERROR.test(error.message)) return;
        finish(new Error(`Redis at ${where} refused the connection: ${error.message}`, { cause: error }));
      };
      const onReady = () => finish();
      const timer = setTimeout(() => {
        const cause = lastError === undefined ? '' : `: ${lastError.message}`;
        finish(
          new Error(`Redis at ${where} did not become ready within ${timeoutMs} ms${cause}`, { cause: lastError }),
        );
      }, timeoutMs);
      connection.on('error', onError);
      connection.on('ready', onReady);
    });
  }
  try {
    await connection.select(endpoint.db);
  } catch (error) {
    throw new Error(`Redis at ${where} cannot select database ${endpoint.db}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * mqemitter-redis' close() waits for both connections to end after QUIT, forever when Redis is
 * down (QUIT sits in the offline queue): past timeoutMs, drop them and call back anyway.
 */
function boundClose(mq: { close(callback: () => void): void }, timeoutMs: number, drop: () => void): void {
  const close = mq.close.bind(mq);
  mq.close = (callback) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      callback();
    };
    const timer = setTimeout(() => {
      drop();
      finish();
    }, timeoutMs);
    close(finish);
  };
}

async function settleWithin(promise: Promise<unknown>, timeoutMs: number): Promise<'done' | 'failed' | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timed out'>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), timeoutMs);
  });
  const outcome = await Promise.race([
    promise.then(
      () => 'done' as const,
      () => 'failed' as const,
    ),
    timeout,
  ]);
  clearTimeout(timer);
  return outcome;
}
