/**
 * Edge agent configuration from the environment.
 *
 *   DEVICE_ID            required; UUID, the CN of the device certificate
 *   EDGE_DB_URL          default file:.data/edge-<DEVICE_ID>.db
 *   SENSOR_HOST          default 127.0.0.1
 *   SENSOR_PORT          default 1883 (0: any free port)
 *   BROKER_URL           required; mqtts://host:port
 *   TLS_CA, TLS_CERT, TLS_KEY   paths of the CA certificate, the device certificate and its key;
 *                        required for mqtts://
 *   ACK_TIMEOUT_MS       default 30000
 *   MAX_IN_FLIGHT_BATCHES default 4
 *   SYNC_INTERVAL_MS     default 30000
 *   METRICS_PORT         optional; serves Prometheus metrics on 127.0.0.1:<port>/metrics
 *   SYNCED_RETENTION_HOURS   how long synced readings stay on the device (default 72, at most 10 years)
 *   DIAGNOSTICS_RETENTION_DAYS  failed readings, sync_log, rejected payloads (default 30, at most 3650)
 *   SHUTDOWN_GRACE_MS    how long SIGTERM waits for a clean close before exiting 1 (default 10000;
 *                        common/process-lifecycle.ts)
 */
import { isDeviceId } from '../schemas/topics.js';
import type { EdgeAgentConfig } from './agent-config.js';
import {
  ConfigError,
  envHost,
  envInt,
  envMqttUrl,
  envOptional,
  envString,
  MAX_TIMER_MS,
  type Env,
} from '../common/env.js';
import { shutdownGraceFromEnv } from '../common/process-lifecycle.js';
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
  const metricsPort =
    envOptional(env, 'METRICS_PORT') === undefined ? undefined : envInt(env, 'METRICS_PORT', 0, { min: 0, max: 65535 });
  return {
    agent: {
      deviceId,
      dbUrl,
      sensorHost: envHost(env, 'SENSOR_HOST', '127.0.0.1'),
      sensorPort: envInt(env, 'SENSOR_PORT', 1883, { min: 0, max: 65535 }),
      brokerUrl,
      ...(tls ? { tls } : {}),
      ackTimeoutMs: envInt(env, 'ACK_TIMEOUT_MS', 30_000, { min: 100, max: MAX_TIMER_MS }),
      maxInFlightBatches: envInt(env, 'MAX_IN_FLIGHT_BATCHES', 4, { min: 1, max: 100 }),
      syncIntervalMs: envInt(env, 'SYNC_INTERVAL_MS', 30_000, { min: 100, max: MAX_TIMER_MS }),
      historyRetention: {
        syncedRetentionMs: envInt(env, 'SYNCED_RETENTION_HOURS', 72, { min: 1, max: 87_600 }) * 3_600_000,
        diagnosticsRetentionMs: envInt(env, 'DIAGNOSTICS_RETENTION_DAYS', 30, { min: 1, max: 3650 }) * 86_400_000,
      },
    },
    metricsPort,
    shutdownGraceMs: shutdownGraceFromEnv(env),
  };
}
