/**
 * Edge agent configuration from the environment.
 *
 *   DEVICE_ID            required; UUID, the CN of the device certificate
 *   EDGE_DB_URL          default file:.data/edge-<DEVICE_ID>.db
 *   SENSOR_HOST          default 127.0.0.1
 *   SENSOR_PORT          default 1883 (0: any free port)
 *   SENSOR_USERS_FILE    sensor users, one NAME:HASH[:ROLE[:SENSORS]] line each (edge/ingest/sensor-users.ts;
 *                        `npm run sensor-user` writes a line); every sensor must then log in
 *   SENSOR_USERNAME, SENSOR_PASSWORD_FILE  instead of SENSOR_USERS_FILE: one sensor user (role both, any
 *                        sensor) whose password is the first line of the file
 *   SENSOR_TLS_CERT, SENSOR_TLS_KEY  the sensor listener speaks TLS with this certificate and key
 *   SENSOR_TLS_CA        sensors must present a client certificate signed by this CA (TLS only)
 *   SENSOR_ALLOW_ANONYMOUS  true: accept sensors without authentication on a non-loopback SENSOR_HOST
 *                        (default false: the agent refuses to start there without authentication)
 *   BROKER_URL           required; mqtts://host:port
 *   TLS_CA, TLS_CERT, TLS_KEY   paths of the CA certificate, the device certificate and its key;
 *                        required for mqtts://
 *   ACK_TIMEOUT_MS       default 30000
 *   MAX_IN_FLIGHT_BATCHES default 4: full batches' worth of readings awaiting their sync/ack (up to 4× as many small batches)
 *   SYNC_INTERVAL_MS     default 30000
 *   METRICS_PORT         optional; serves Prometheus metrics on METRICS_HOST:<port>/metrics
 *   METRICS_HOST         listen address of /metrics (default 127.0.0.1: it has no authentication)
 *   SYNCED_RETENTION_HOURS   how long synced readings stay on the device (default 72, at most 10 years)
 *   DIAGNOSTICS_RETENTION_DAYS  failed readings, sync_log, rejected payloads (default 30, at most 3650)
 *   EDGE_MAX_DB_BYTES    most bytes the database (with its WAL) may take (default 1073741824 = 1 GiB,
 *                        at least 4194304); the agent stops taking readings a reserve below it, or
 *                        below what the filesystem has room for (edge/store/storage-budget.ts)
 *   EDGE_OVERFLOW_POLICY when full, after pruning synced readings: reject-new (default: PUBACKs
 *                        withheld until there is room) or drop-oldest (oldest pending readings
 *                        dropped, counted and reported upstream)
 *   EDGE_LOCAL_COMMAND_TIMEOUT_MS  how long a local application has to answer a command handed to it on
 *                        local/commands/{type} before the command is failed (default 30000; a
 *                        command's payload.timeoutMs overrides it)
 *   EDGE_REPORT_RESEND_MS first wait before an unconfirmed command or config report is sent again,
 *                        doubling up to 5 minutes (default 10000); always at once on reconnect
 *   SHUTDOWN_GRACE_MS    how long SIGTERM waits for a clean close before exiting 1 (default 10000;
 *                        common/process-lifecycle.ts)
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { isDeviceId } from '../schemas/topics.js';
import type { EdgeAgentConfig } from './agent-config.js';
import { checkListenerExposure } from './ingest/listener-exposure.js';
import type { SensorTlsFiles } from './ingest/sensor-listener.js';
import { hashPasswordSync } from './ingest/sensor-passwords.js';
import { parseSensorUsers, SENSOR_USER_NAME_PATTERN, type SensorUser } from './ingest/sensor-users.js';
import {
  ConfigError,
  envBool,
  envHost,
  envInt,
  envMqttUrl,
  envOptional,
  envString,
  MAX_TIMER_MS,
  type Env,
} from '../common/env.js';
import { shutdownGraceFromEnv } from '../common/process-lifecycle.js';
import {
  DEFAULT_MAX_DB_BYTES,
  MIN_MAX_DB_BYTES,
  OVERFLOW_POLICIES,
  type OverflowPolicy,
} from './store/storage-budget.js';
import { tlsFilesFromEnv } from '../common/tls-files.js';

const TLS_VARIABLES = { ca: 'TLS_CA', cert: 'TLS_CERT', key: 'TLS_KEY' };

export interface EdgeProcessConfig {
  agent: EdgeAgentConfig;
  /** undefined: no metrics endpoint */
  metricsPort: number | undefined;
  /** how long main.ts waits for close() after SIGTERM */
  shutdownGraceMs: number;
}

export function loadEdgeConfig(env: Env = process.env): EdgeProcessConfig {
  const deviceId = envString(env, 'DEVICE_ID');
  if (!isDeviceId(deviceId))
    throw new ConfigError(`DEVICE_ID must be a lower-case UUID (the certificate CN), got '${deviceId}'`);
  const brokerUrl = envMqttUrl(env, 'BROKER_URL');
  const dbUrl = envString(env, 'EDGE_DB_URL', `file:.data/edge-${deviceId}.db`);
  if (!dbUrl.startsWith('file:')) throw new ConfigError(`EDGE_DB_URL must be a file: URL, got '${dbUrl}'`);
  const tls = tlsFilesFromEnv(env, TLS_VARIABLES, {
    required: brokerUrl.startsWith('mqtts:'),
    requiredBecause: 'for an mqtts:// BROKER_URL (mutual TLS)',
  });
  const overflowPolicy = envString(env, 'EDGE_OVERFLOW_POLICY', 'reject-new');
  if (!(OVERFLOW_POLICIES as readonly string[]).includes(overflowPolicy)) {
    throw new ConfigError(`EDGE_OVERFLOW_POLICY must be reject-new or drop-oldest, got '${overflowPolicy}'`);
  }
  const metricsPort =
    envOptional(env, 'METRICS_PORT') === undefined ? undefined : envInt(env, 'METRICS_PORT', 0, { min: 0, max: 65535 });
  const sensorHost = envHost(env, 'SENSOR_HOST', '127.0.0.1');
  const metricsHost = envHost(env, 'METRICS_HOST', '127.0.0.1');
  const sensorUsers = sensorUsersFromEnv(env);
  const sensorTls = sensorTlsFromEnv(env);
  const sensorAllowAnonymous = envBool(env, 'SENSOR_ALLOW_ANONYMOUS', false);
  const authenticated = sensorUsers !== undefined || sensorTls?.ca !== undefined;
  if (sensorAllowAnonymous && authenticated) {
    throw new ConfigError(
      'SENSOR_ALLOW_ANONYMOUS=true contradicts the sensor authentication configured ' +
        '(SENSOR_USERS_FILE, SENSOR_USERNAME or SENSOR_TLS_CA): anonymous sensors would be refused anyway',
    );
  }
  const exposure = checkListenerExposure({ host: sensorHost, authenticated, allowAnonymous: sensorAllowAnonymous });
  if (!exposure.ok) throw new ConfigError(exposure.reason);
  return {
    agent: {
      deviceId,
      dbUrl,
      sensorHost,
      sensorPort: envInt(env, 'SENSOR_PORT', 1883, { min: 0, max: 65535 }),
      metricsHost,
      ...(sensorUsers ? { sensorUsers } : {}),
      ...(sensorTls ? { sensorTls } : {}),
      ...(sensorAllowAnonymous ? { sensorAllowAnonymous } : {}),
      brokerUrl,
      ...(tls ? { tls } : {}),
      ackTimeoutMs: envInt(env, 'ACK_TIMEOUT_MS', 30_000, { min: 100, max: MAX_TIMER_MS }),
      maxInFlightBatches: envInt(env, 'MAX_IN_FLIGHT_BATCHES', 4, { min: 1, max: 100 }),
      syncIntervalMs: envInt(env, 'SYNC_INTERVAL_MS', 30_000, { min: 100, max: MAX_TIMER_MS }),
      maxDbBytes: envInt(env, 'EDGE_MAX_DB_BYTES', DEFAULT_MAX_DB_BYTES, { min: MIN_MAX_DB_BYTES, max: 2 ** 50 }),
      overflowPolicy: overflowPolicy as OverflowPolicy,
      localCommandTimeoutMs: envInt(env, 'EDGE_LOCAL_COMMAND_TIMEOUT_MS', 30_000, { min: 100, max: MAX_TIMER_MS }),
      reportResendMs: envInt(env, 'EDGE_REPORT_RESEND_MS', 10_000, { min: 100, max: 300_000 }),
      historyRetention: {
        syncedRetentionMs: envInt(env, 'SYNCED_RETENTION_HOURS', 72, { min: 1, max: 87_600 }) * 3_600_000,
        diagnosticsRetentionMs: envInt(env, 'DIAGNOSTICS_RETENTION_DAYS', 30, { min: 1, max: 3650 }) * 86_400_000,
      },
    },
    metricsPort,
    shutdownGraceMs: shutdownGraceFromEnv(env),
  };
}

function readConfigFile(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(`${name}: cannot read '${path}': ${reason}`);
  }
}

/** The sensor users of SENSOR_USERS_FILE, or the one of SENSOR_USERNAME/SENSOR_PASSWORD_FILE; undefined: none. */
function sensorUsersFromEnv(env: Env): SensorUser[] | undefined {
  const usersFile = envOptional(env, 'SENSOR_USERS_FILE');
  const username = envOptional(env, 'SENSOR_USERNAME');
  const passwordFile = envOptional(env, 'SENSOR_PASSWORD_FILE');
  if (usersFile !== undefined) {
    if (username !== undefined || passwordFile !== undefined) {
      throw new ConfigError(
        'SENSOR_USERS_FILE excludes SENSOR_USERNAME and SENSOR_PASSWORD_FILE: give one or the other',
      );
    }
    const parsed = parseSensorUsers(readConfigFile('SENSOR_USERS_FILE', usersFile));
    if ('error' in parsed) throw new ConfigError(`SENSOR_USERS_FILE '${usersFile}': ${parsed.error}`);
    return parsed.users;
  }
  if (username === undefined && passwordFile === undefined) return undefined;
  if (username === undefined || passwordFile === undefined) {
    throw new ConfigError('SENSOR_USERNAME and SENSOR_PASSWORD_FILE must be given together');
  }
  if (!SENSOR_USER_NAME_PATTERN.test(username)) {
    throw new ConfigError(`SENSOR_USERNAME must be 1-64 characters of A-Z a-z 0-9 _ . @ -, got '${username}'`);
  }
  const password = readConfigFile('SENSOR_PASSWORD_FILE', passwordFile).split(/\r?\n/)[0] ?? '';
  if (password === '') throw new ConfigError(`SENSOR_PASSWORD_FILE: the first line of '${passwordFile}' is empty`);
  // hashed once here, so it is checked like a users-file entry: scrypt, compared in constant time
  return [{ name: username, password: hashPasswordSync(password), role: 'both', sensors: 'any' }];
}

function sensorTlsFromEnv(env: Env): SensorTlsFiles | undefined {
  const certPath = envOptional(env, 'SENSOR_TLS_CERT');
  const keyPath = envOptional(env, 'SENSOR_TLS_KEY');
  const caPath = envOptional(env, 'SENSOR_TLS_CA');
  if (certPath === undefined && keyPath === undefined) {
    if (caPath !== undefined) {
      throw new ConfigError("SENSOR_TLS_CA needs SENSOR_TLS_CERT and SENSOR_TLS_KEY (the listener's own certificate)");
    }
    return undefined;
  }
  if (certPath === undefined || keyPath === undefined) {
    throw new ConfigError('SENSOR_TLS_CERT and SENSOR_TLS_KEY must be given together');
  }
  const files: SensorTlsFiles = {
    cert: Buffer.from(readConfigFile('SENSOR_TLS_CERT', certPath)),
    key: Buffer.from(readConfigFile('SENSOR_TLS_KEY', keyPath)),
    ...(caPath === undefined ? {} : { ca: Buffer.from(readConfigFile('SENSOR_TLS_CA', caPath)) }),
  };
  try {
    createSecureContext(files);
  } catch (error) {
    const names =
      caPath === undefined ? 'SENSOR_TLS_CERT and SENSOR_TLS_KEY' : 'SENSOR_TLS_CERT, SENSOR_TLS_KEY and SENSOR_TLS_CA';
    throw new ConfigError(`${names} are not a usable certificate, key and CA: ${(error as Error).message}`);
  }
  return files;
}
