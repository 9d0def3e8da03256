/**
 * Bridge configuration from the environment.
 *
 *   DATABASE_URL          postgres://… of the CockroachDB load balancer (or PostgreSQL)   required
 *   BROKER_URL            mqtts://host:8883 (mqtt:// only for tests)                        required
 *   TLS_CA, TLS_CERT, TLS_KEY   paths of the CA and the bridge's service certificate/key;
 *                         required for mqtts://
 *   BRIDGE_CLIENT_ID      MQTT client id = CN of the service certificate (1-64 printable ASCII
 *                         characters, no spaces)                                  default bridge
 *   BATCH_MAX_RECORDS     records per database transaction                       default 2000
 *   BATCH_MAX_MESSAGES    messages per database transaction                      default 500
 *   BATCH_MAX_BYTES       MQTT payload bytes per database transaction (1 KiB … 64 MiB)  default 4194304
 *   BATCH_LINGER_MS       longest wait for more messages before a batch is written  default 10
 *   MAX_IN_FLIGHT         telemetry messages held for the database (queued or being written);
 *                         one more is answered "retry later" (G7, bridge/ingest/fair-scheduler.ts)  default 1000
 *   MAX_IN_FLIGHT_BYTES   payload bytes held for the database, in all               default 67108864
 *   DEVICE_MAX_IN_FLIGHT  messages held for one device                             default 32
 *   DEVICE_MAX_IN_FLIGHT_BYTES  payload bytes held for one device                  default 8388608
 *   BATCH_WRITERS         database batches written at once, a device in at most one  default 2
 *   PARSE_WORKERS         worker threads that parse telemetry messages over 64 KiB (G7,
 *                         bridge/ingest/parse-pool.ts); 0: parse them on the event loop in slices  default 1
 *   RETRY_LATER_MS        the retryAfterMs of a "retry later" sync/ack             default 1000
 *   DB_POOL_SIZE          database connections                                     default 10
 *   DB_QUERY_TIMEOUT_MS   longest wait for one query's answer (a silently dead connection)  default 60000
 *   RETENTION_DAYS        telemetry retention (PostgreSQL job; CockroachDB uses its TTL)  default 90
 *   RETENTION_INTERVAL_MS how often the PostgreSQL retention job runs (≤ 2^31-1, a Node.js timer)
 *                                                                             default 3600000
 *   RETENTION_CHUNK_SIZE  rows per DELETE of the retention job                    default 1000
 *   REVOCATION_POLL_MS    how often revoked_certificates is polled for the revocation list the
 *                         broker nodes enforce (bridge/revocation-publisher.ts)  default 1000
 *   COMMAND_DEFAULT_TTL_MS  lifetime of a command created without expiresAt (G6)  default 604800000 (7 days)
 *   DOWNSTREAM_POLL_MS    how often commands/device_configs are polled for rows another bridge or
 *                         API instance wrote (their retained topics are published)  default 500
 *   EXPIRY_SWEEP_MS       how often overdue commands are expired and their topics cleared  default 1000
 *   RECONCILE_INTERVAL_MS how often the retained command/config topics are compared with the
 *                         database and repaired (also at start and after a broker lost its session)
 *                                                                             default 300000
 *   RECONCILE_PUBLISH_RATE  retained publishes per second a reconciliation may send  default 500
 *   HTTP_HOST, HTTP_PORT  /metrics and /healthz (HTTP_PORT=0: any free port)  default 127.0.0.1:9464
 *                         (loopback: the endpoint has no authentication; docker-compose sets 0.0.0.0)
 *   API_HOST, API_PORT    the REST API over mutual TLS (bridge/api/); no API unless API_PORT is set
 *                         (0: any free port)                                      default 127.0.0.1
 *   API_TLS_CA, API_TLS_CERT, API_TLS_KEY   the CA its clients' certificates must chain to, and
 *                         the API's server certificate and key (serverAuth, with the API's host
 *                         names); default: TLS_CA, TLS_CERT, TLS_KEY (the bridge's own identity)
 *   SHUTDOWN_GRACE_MS     how long SIGTERM waits for a clean close before exiting 1  default 10000
 *                         (common/process-lifecycle.ts)
 */
import type { BatchLimits } from './ingest/batch-accumulator.js';
import {
  ConfigError,
  envHost,
  envInt,
  envMqttUrl,
  envOptional,
  envString,
  MAX_TIMER_MS,
  redactUrlCredentials,
  type Env,
} from '../common/env.js';
import { DEFAULT_COMMAND_TTL_MS } from '../schemas/limits.js';
import { shutdownGraceFromEnv } from '../common/process-lifecycle.js';
import { tlsFilesFromEnv, type TlsFiles } from '../common/tls-files.js';

export interface BridgeConfig {
  databaseUrl: string;
  brokerUrl: string;
  /** null: plain mqtt:// (tests only) */
  tls: TlsFiles | null;
  clientId: string;
  batch: BatchLimits;
  /**
   * Received messages whose database write has not finished; at this many the bridge stops
   * reading from the broker until a batch commits (see bridge/mqtt/deferred-puback.ts).
   */
  maxInFlight: number;
  // G7: bounds on what the bridge holds, and fair writing (bridge/ingest/fair-scheduler.ts)
  maxInFlightBytes: number;
  deviceMaxInFlight: number;
  deviceMaxInFlightBytes: number;
  batchWriters: number;
  /** G7: worker threads parsing large telemetry messages; 0 = on the event loop, in slices */
  parseWorkers: number;
  retryLaterMs: number;
  dbPoolSize: number;
  /** a query without an answer for this long fails and its connection is closed */
  dbQueryTimeoutMs: number;
  retentionDays: number;
  retentionIntervalMs: number;
  retentionChunkSize: number;
  /** how often the revocation list is polled (G9) */
  revocationPollMs: number;
  /** G6: commands and config (bridge/downstream/) */
  downstream: DownstreamSettings;
  /** null: no HTTP server */
  http: { host: string; port: number } | null;
  // ---- REST API (bridge/api/) ----
  /** null: no REST API (API_PORT unset) */
  api?: ApiConfig | null;
  /** how long bridge/main.ts waits for close() after SIGTERM; not used by startBridge (in-process callers leave it out) */
  shutdownGraceMs?: number;
}

export interface ApiConfig {
  host: string;
  port: number;
  /** the API's server certificate and key, and the CA client certificates must chain to */
  tls: TlsFiles;
}

/** G6: timings of the downstream side (bridge/downstream/). */
export interface DownstreamSettings {
  commandDefaultTtlMs: number;
  pollMs: number;
  expirySweepMs: number;
  reconcileIntervalMs: number;
  reconcilePublishRate: number;
}

const MIB = 1024 * 1024;
const API_TLS_VARIABLES = { ca: 'API_TLS_CA', cert: 'API_TLS_CERT', key: 'API_TLS_KEY' };
const TLS_VARIABLES = { ca: 'TLS_CA', cert: 'TLS_CERT', key: 'TLS_KEY' };

/** Everything of a BridgeConfig that has a default (the environment loader's fallbacks). */
export const BRIDGE_DEFAULTS = {
  batch: { maxRecords: 2000, maxMessages: 500, maxBytes: 4 * MIB, lingerMs: 10 },
  maxInFlight: 1000,
  maxInFlightBytes: 64 * MIB,
  deviceMaxInFlight: 32,
  deviceMaxInFlightBytes: 8 * MIB,
  batchWriters: 2,
  parseWorkers: 1,
  retryLaterMs: 1000,
  dbPoolSize: 10,
  dbQueryTimeoutMs: 60_000,
  retentionDays: 90,
  retentionIntervalMs: 3_600_000,
  retentionChunkSize: 1000,
  revocationPollMs: 1000,
  downstream: {
    commandDefaultTtlMs: DEFAULT_COMMAND_TTL_MS,
    pollMs: 500,
    expirySweepMs: 1000,
    reconcileIntervalMs: 300_000,
    reconcilePublishRate: 500,
  },
} as const satisfies Omit<BridgeConfig, 'databaseUrl' | 'brokerUrl' | 'tls' | 'clientId' | 'http'>;

export function loadBridgeConfig(env: Env = process.env): BridgeConfig {
  const defaults = BRIDGE_DEFAULTS;
  const databaseUrl = databaseUrlFrom(env);
  const brokerUrl = envMqttUrl(env, 'BROKER_URL');
  const tls =
    tlsFilesFromEnv(env, TLS_VARIABLES, {
      required: brokerUrl.startsWith('mqtts:'),
      requiredBecause: 'for an mqtts:// BROKER_URL (mutual TLS)',
    }) ?? null;
  return {
    databaseUrl,
    brokerUrl,
    tls,
    clientId: clientIdFrom(env),
    batch: {
      maxRecords: envInt(env, 'BATCH_MAX_RECORDS', defaults.batch.maxRecords, { min: 1, max: 50_000 }),
      maxMessages: envInt(env, 'BATCH_MAX_MESSAGES', defaults.batch.maxMessages, { min: 1, max: 10_000 }),
      maxBytes: envInt(env, 'BATCH_MAX_BYTES', defaults.batch.maxBytes, { min: 1024, max: 64 * MIB }),
      lingerMs: envInt(env, 'BATCH_LINGER_MS', defaults.batch.lingerMs, { min: 0, max: 10_000 }),
    },
    maxInFlight: envInt(env, 'MAX_IN_FLIGHT', defaults.maxInFlight, { min: 1 }),
    maxInFlightBytes: envInt(env, 'MAX_IN_FLIGHT_BYTES', defaults.maxInFlightBytes, { min: MIB, max: 4096 * MIB }),
    deviceMaxInFlight: envInt(env, 'DEVICE_MAX_IN_FLIGHT', defaults.deviceMaxInFlight, { min: 1, max: 100_000 }),
    deviceMaxInFlightBytes: envInt(env, 'DEVICE_MAX_IN_FLIGHT_BYTES', defaults.deviceMaxInFlightBytes, {
      min: MIB,
      max: 4096 * MIB,
    }),
    batchWriters: envInt(env, 'BATCH_WRITERS', defaults.batchWriters, { min: 1, max: 32 }),
    parseWorkers: envInt(env, 'PARSE_WORKERS', defaults.parseWorkers, { min: 0, max: 16 }),
    retryLaterMs: envInt(env, 'RETRY_LATER_MS', defaults.retryLaterMs, { min: 1, max: 3_600_000 }),
    dbPoolSize: envInt(env, 'DB_POOL_SIZE', defaults.dbPoolSize, { min: 1, max: 200 }),
    dbQueryTimeoutMs: envInt(env, 'DB_QUERY_TIMEOUT_MS', defaults.dbQueryTimeoutMs, { min: 100, max: 3_600_000 }),
    retentionDays: envInt(env, 'RETENTION_DAYS', defaults.retentionDays, { min: 1, max: 36_500 }),
    retentionIntervalMs: envInt(env, 'RETENTION_INTERVAL_MS', defaults.retentionIntervalMs, {
      min: 1000,
      max: MAX_TIMER_MS,
    }),
    retentionChunkSize: envInt(env, 'RETENTION_CHUNK_SIZE', defaults.retentionChunkSize, { min: 1, max: 100_000 }),
    revocationPollMs: envInt(env, 'REVOCATION_POLL_MS', defaults.revocationPollMs, { min: 100, max: 60_000 }),
    downstream: {
      commandDefaultTtlMs: envInt(env, 'COMMAND_DEFAULT_TTL_MS', defaults.downstream.commandDefaultTtlMs, {
        min: 1000,
        max: 365 * 24 * 3_600_000,
      }),
      pollMs: envInt(env, 'DOWNSTREAM_POLL_MS', defaults.downstream.pollMs, { min: 50, max: 60_000 }),
      expirySweepMs: envInt(env, 'EXPIRY_SWEEP_MS', defaults.downstream.expirySweepMs, { min: 100, max: 3_600_000 }),
      reconcileIntervalMs: envInt(env, 'RECONCILE_INTERVAL_MS', defaults.downstream.reconcileIntervalMs, {
        min: 1000,
        max: MAX_TIMER_MS,
      }),
      reconcilePublishRate: envInt(env, 'RECONCILE_PUBLISH_RATE', defaults.downstream.reconcilePublishRate, {
        min: 1,
        max: 100_000,
      }),
    },
    http: {
      host: envHost(env, 'HTTP_HOST', '127.0.0.1'),
      port: envInt(env, 'HTTP_PORT', 9464, { min: 0, max: 65_535 }),
    },
    api: apiConfigFrom(env, tls),
    shutdownGraceMs: shutdownGraceFromEnv(env),
  };
}

// ---- REST API (bridge/api/) ----
function apiConfigFrom(env: Env, bridgeTls: TlsFiles | null): ApiConfig | null {
  const host = envHost(env, 'API_HOST', '127.0.0.1');
  const apiTls = tlsFilesFromEnv(env, API_TLS_VARIABLES, { required: false });
  if (envOptional(env, 'API_PORT') === undefined) return null;
  const port = envInt(env, 'API_PORT', 0, { min: 0, max: 65_535 });
  const tls = apiTls ?? bridgeTls;
  if (tls === null) {
    throw new ConfigError(
      'API_PORT needs API_TLS_CA, API_TLS_CERT and API_TLS_KEY (or TLS_CA, TLS_CERT and TLS_KEY): the REST API is served over mutual TLS only',
    );
  }
  return { host, port, tls };
}

/** postgres:// or postgresql:// (what node-postgres takes); the password never appears in the error. */
function databaseUrlFrom(env: Env): string {
  const raw = envString(env, 'DATABASE_URL');
  let protocol: string | undefined;
  try {
    protocol = new URL(raw).protocol;
  } catch {
    protocol = undefined;
  }
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    throw new ConfigError(
      `DATABASE_URL must be a postgres:// or postgresql:// URL, got '${redactUrlCredentials(raw)}'`,
    );
  }
  return raw;
}

/** The broker accepts client ids of up to 64 characters; the id is the CN of the bridge's certificate. */
const CLIENT_ID = /^[\x21-\x7e]{1,64}$/;

function clientIdFrom(env: Env): string {
  const clientId = envString(env, 'BRIDGE_CLIENT_ID', 'bridge');
  if (!CLIENT_ID.test(clientId)) {
    throw new ConfigError(
      `BRIDGE_CLIENT_ID must be 1-64 printable ASCII characters without spaces (the CN of the bridge's certificate), got '${clientId}'`,
    );
  }
  return clientId;
}
