import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBridgeConfig, type BridgeConfig } from '../../bridge/config.js';
import { ConfigError, MAX_TIMER_MS } from '../../common/env.js';
import {
  configErrorOf,
  describeVariableTables,
  documentedVariables,
  variablesReadIn,
  type BadValue,
  type IntegerVariable,
} from '../helpers/config-cases.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const required = { DATABASE_URL: 'postgres://db/x', BROKER_URL: 'mqtt://localhost:1883' };

describe('loadBridgeConfig', () => {
  it('applies the defaults', () => {
    expect(loadBridgeConfig(required)).toEqual({
      databaseUrl: 'postgres://db/x',
      brokerUrl: 'mqtt://localhost:1883',
      tls: null,
      clientId: 'bridge',
      batch: { maxRecords: 2000, maxMessages: 500, maxBytes: 4 * 1024 * 1024, lingerMs: 10 },
      maxInFlight: 1000,
      maxInFlightBytes: 64 * 1024 * 1024,
      deviceMaxInFlight: 32,
      deviceMaxInFlightBytes: 8 * 1024 * 1024,
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
        commandDefaultTtlMs: 7 * 24 * 3_600_000,
        pollMs: 500,
        expirySweepMs: 1000,
        reconcileIntervalMs: 300_000,
        reconcilePublishRate: 500,
      },
      http: { host: '127.0.0.1', port: 9464 },
      api: null,
      shutdownGraceMs: 10_000,
    });
  });

  it('serves the REST API only when API_PORT is set, over the API_TLS_* files or else the bridge own TLS files', () => {
    const dir = tempDirectory('bridge-config-api');
    for (const name of ['ca', 'cert', 'key', 'api-ca', 'api-cert', 'api-key'])
      writeFileSync(join(dir, `${name}.pem`), name);
    const bridgeTls = { TLS_CA: join(dir, 'ca.pem'), TLS_CERT: join(dir, 'cert.pem'), TLS_KEY: join(dir, 'key.pem') };
    const apiTls = {
      API_TLS_CA: join(dir, 'api-ca.pem'),
      API_TLS_CERT: join(dir, 'api-cert.pem'),
      API_TLS_KEY: join(dir, 'api-key.pem'),
    };
    expect(loadBridgeConfig({ ...required, ...bridgeTls }).api).toBeNull();
    const reused = loadBridgeConfig({ ...required, ...bridgeTls, API_PORT: '8443' }).api;
    expect(reused).toMatchObject({ host: '127.0.0.1', port: 8443 });
    expect(reused?.tls.cert.toString()).toBe('cert');
    const own = loadBridgeConfig({ ...required, ...bridgeTls, ...apiTls, API_PORT: '0', API_HOST: '0.0.0.0' }).api;
    expect(own).toMatchObject({ host: '0.0.0.0', port: 0 });
    expect(own?.tls.cert.toString()).toBe('api-cert');
  });

  it('requires the database and broker URLs', () => {
    expect(() => loadBridgeConfig({ BROKER_URL: 'mqtt://x' })).toThrow(ConfigError);
    expect(() => loadBridgeConfig({ DATABASE_URL: 'postgres://x' })).toThrow(/BROKER_URL is required/);
  });

  it('requires all three TLS files for mqtts:// and reads them', () => {
    expect(() => loadBridgeConfig({ ...required, BROKER_URL: 'mqtts://broker:8883' })).toThrow(
      /TLS_CA, TLS_CERT and TLS_KEY/,
    );
    expect(() => loadBridgeConfig({ ...required, TLS_CA: '/ca.pem' })).toThrow(/together/);
    const dir = tempDirectory('bridge-config');
    for (const name of ['ca', 'cert', 'key']) writeFileSync(join(dir, `${name}.pem`), name);
    const config = loadBridgeConfig({
      ...required,
      BROKER_URL: 'mqtts://broker:8883',
      TLS_CA: join(dir, 'ca.pem'),
      TLS_CERT: join(dir, 'cert.pem'),
      TLS_KEY: join(dir, 'key.pem'),
    });
    expect(config.tls?.cert.toString()).toBe('cert');
    expect(() => loadBridgeConfig({ ...required, TLS_CA: join(dir, 'nope'), TLS_CERT: 'x', TLS_KEY: 'y' })).toThrow(
      /cannot read/,
    );
  });

  it('reads BATCH_MAX_BYTES and refuses a value that is not a byte count in range', () => {
    expect(loadBridgeConfig({ ...required, BATCH_MAX_BYTES: '1048576' }).batch.maxBytes).toBe(1_048_576);
    expect(() => loadBridgeConfig({ ...required, BATCH_MAX_BYTES: '4MiB' })).toThrow(ConfigError);
    expect(() => loadBridgeConfig({ ...required, BATCH_MAX_BYTES: '4MiB' })).toThrow(
      "BATCH_MAX_BYTES must be an integer, got '4MiB'",
    );
    expect(() => loadBridgeConfig({ ...required, BATCH_MAX_BYTES: '0' })).toThrow(
      'BATCH_MAX_BYTES must be ≥ 1024, got 0',
    );
    expect(() => loadBridgeConfig({ ...required, BATCH_MAX_BYTES: String(65 * 1024 * 1024) })).toThrow(
      /BATCH_MAX_BYTES must be ≤ 67108864/,
    );
  });

  it('reads DB_QUERY_TIMEOUT_MS', () => {
    expect(loadBridgeConfig({ ...required, DB_QUERY_TIMEOUT_MS: '5000' }).dbQueryTimeoutMs).toBe(5000);
    expect(() => loadBridgeConfig({ ...required, DB_QUERY_TIMEOUT_MS: '0' })).toThrow(ConfigError);
  });

  it('validates numbers', () => {
    expect(() => loadBridgeConfig({ ...required, BATCH_LINGER_MS: 'soon' })).toThrow(/must be an integer/);
    expect(loadBridgeConfig({ ...required, BATCH_MAX_RECORDS: '5000', HTTP_PORT: '0' })).toMatchObject({
      batch: { maxRecords: 5000 },
      http: { port: 0 },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// every variable, table-driven

const directory = tempDirectory('bridge-config-table');
const tlsNames = ['TLS_CA', 'TLS_CERT', 'TLS_KEY'] as const;
const readable = Object.fromEntries(
  tlsNames.map((name) => {
    const path = join(directory, `${name}.pem`);
    writeFileSync(path, name);
    return [name, path];
  }),
);
const missing = join(directory, 'missing.pem');
const MIB = 1024 * 1024;

const INTEGER_VARIABLES: IntegerVariable<BridgeConfig>[] = [
  { name: 'BATCH_MAX_RECORDS', min: 1, max: 50_000, fallback: 2000, read: (c) => c.batch.maxRecords },
  { name: 'BATCH_MAX_MESSAGES', min: 1, max: 10_000, fallback: 500, read: (c) => c.batch.maxMessages },
  { name: 'BATCH_MAX_BYTES', min: 1024, max: 64 * MIB, fallback: 4 * MIB, read: (c) => c.batch.maxBytes },
  { name: 'BATCH_LINGER_MS', min: 0, max: 10_000, fallback: 10, read: (c) => c.batch.lingerMs },
  { name: 'MAX_IN_FLIGHT', min: 1, fallback: 1000, read: (c) => c.maxInFlight },
  // G7: fairness and bounded memory
  { name: 'MAX_IN_FLIGHT_BYTES', min: MIB, max: 4096 * MIB, fallback: 64 * MIB, read: (c) => c.maxInFlightBytes },
  { name: 'DEVICE_MAX_IN_FLIGHT', min: 1, max: 100_000, fallback: 32, read: (c) => c.deviceMaxInFlight },
  {
    name: 'DEVICE_MAX_IN_FLIGHT_BYTES',
    min: MIB,
    max: 4096 * MIB,
    fallback: 8 * MIB,
    read: (c) => c.deviceMaxInFlightBytes,
  },
  { name: 'BATCH_WRITERS', min: 1, max: 32, fallback: 2, read: (c) => c.batchWriters },
  { name: 'PARSE_WORKERS', min: 0, max: 16, fallback: 1, read: (c) => c.parseWorkers },
  { name: 'RETRY_LATER_MS', min: 1, max: 3_600_000, fallback: 1000, read: (c) => c.retryLaterMs },
  { name: 'DB_POOL_SIZE', min: 1, max: 200, fallback: 10, read: (c) => c.dbPoolSize },
  { name: 'DB_QUERY_TIMEOUT_MS', min: 100, max: 3_600_000, fallback: 60_000, read: (c) => c.dbQueryTimeoutMs },
  { name: 'RETENTION_DAYS', min: 1, max: 36_500, fallback: 90, read: (c) => c.retentionDays },
  {
    name: 'RETENTION_INTERVAL_MS',
    min: 1000,
    max: MAX_TIMER_MS,
    fallback: 3_600_000,
    read: (c) => c.retentionIntervalMs,
  },
  { name: 'RETENTION_CHUNK_SIZE', min: 1, max: 100_000, fallback: 1000, read: (c) => c.retentionChunkSize },
  { name: 'REVOCATION_POLL_MS', min: 100, max: 60_000, fallback: 1000, read: (c) => c.revocationPollMs },
  {
    name: 'COMMAND_DEFAULT_TTL_MS',
    min: 1000,
    max: 365 * 24 * 3_600_000,
    fallback: 7 * 24 * 3_600_000,
    read: (c) => c.downstream.commandDefaultTtlMs,
  },
  { name: 'DOWNSTREAM_POLL_MS', min: 50, max: 60_000, fallback: 500, read: (c) => c.downstream.pollMs },
  { name: 'EXPIRY_SWEEP_MS', min: 100, max: 3_600_000, fallback: 1000, read: (c) => c.downstream.expirySweepMs },
  {
    name: 'RECONCILE_INTERVAL_MS',
    min: 1000,
    max: MAX_TIMER_MS,
    fallback: 300_000,
    read: (c) => c.downstream.reconcileIntervalMs,
  },
  {
    name: 'RECONCILE_PUBLISH_RATE',
    min: 1,
    max: 100_000,
    fallback: 500,
    read: (c) => c.downstream.reconcilePublishRate,
  },
  { name: 'HTTP_PORT', min: 0, max: 65_535, fallback: 9464, read: (c) => c.http?.port },
  { name: 'SHUTDOWN_GRACE_MS', min: 1, max: MAX_TIMER_MS, fallback: 10_000, read: (c) => c.shutdownGraceMs },
];

const BAD_VALUES: BadValue[] = [
  ...['mysql://db/x', 'not a url', 'db.internal:26257', 'http://db/x'].map((value) => ({
    name: 'DATABASE_URL',
    value,
    message: `DATABASE_URL must be a postgres:// or postgresql:// URL, got '${value}'`,
  })),
  {
    name: 'DATABASE_URL',
    value: 'mysql://root:hunter2@db/x',
    message: "DATABASE_URL must be a postgres:// or postgresql:// URL, got 'mysql://***@db/x'",
  },
  ...['http://broker:8883', 'broker:8883', 'mqtts://', 'tls://broker:8883', 'ws://broker'].map((value) => ({
    name: 'BROKER_URL',
    value,
    message: `BROKER_URL must look like mqtts://host:port, got '${value}'`,
  })),
  ...['my bridge', 'b'.repeat(65), 'brüdge'].map((value) => ({
    name: 'BRIDGE_CLIENT_ID',
    value,
    message: /^BRIDGE_CLIENT_ID must be 1-64 printable ASCII characters without spaces/,
  })),
  ...['0.0.0.0:9464', 'http://0.0.0.0', '[::]'].map((value) => ({
    name: 'HTTP_HOST',
    value,
    message: `HTTP_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...tlsNames.map((name) => ({
    name,
    value: missing,
    with: { ...readable, BROKER_URL: 'mqtts://broker:8883' },
    message: `${name}: cannot read '${missing}': ENOENT`,
  })),
  {
    name: 'TLS_KEY',
    value: readable['TLS_KEY'] ?? '',
    message: 'TLS_CA, TLS_CERT and TLS_KEY must be given together',
  },
  // ---- REST API ----
  ...['https', '-1', '65536', '84 43'].map((value) => ({
    name: 'API_PORT',
    value,
    with: { ...readable },
    message: /^API_PORT must be/,
  })),
  {
    name: 'API_PORT',
    value: '8443',
    message:
      'API_PORT needs API_TLS_CA, API_TLS_CERT and API_TLS_KEY (or TLS_CA, TLS_CERT and TLS_KEY): the REST API is served over mutual TLS only',
  },
  ...['0.0.0.0:8443', 'https://api'].map((value) => ({
    name: 'API_HOST',
    value,
    message: `API_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...(['API_TLS_CA', 'API_TLS_CERT', 'API_TLS_KEY'] as const).map((name) => ({
    name,
    value: missing,
    with: { API_TLS_CA: readable['TLS_CA'], API_TLS_CERT: readable['TLS_CERT'], API_TLS_KEY: readable['TLS_KEY'] },
    message: `${name}: cannot read '${missing}': ENOENT`,
  })),
  {
    name: 'API_TLS_CERT',
    value: readable['TLS_CERT'] ?? '',
    message: 'API_TLS_CA, API_TLS_CERT and API_TLS_KEY must be given together',
  },
];

describe('bridge environment, variable by variable', () => {
  it('has a test table entry for exactly the variables bridge/config.ts documents and reads', () => {
    const tested = [...new Set([...INTEGER_VARIABLES.map((v) => v.name), ...BAD_VALUES.map((v) => v.name)])].sort();
    expect(tested).toEqual(documentedVariables('bridge/config.ts'));
    expect(variablesReadIn('bridge/config.ts')).toEqual(documentedVariables('bridge/config.ts'));
  });

  it('takes an empty DATABASE_URL or BROKER_URL as missing', () => {
    expect(configErrorOf(() => loadBridgeConfig({ ...required, DATABASE_URL: '' })).message).toBe(
      'DATABASE_URL is required',
    );
    expect(configErrorOf(() => loadBridgeConfig({ ...required, BROKER_URL: '' })).message).toBe(
      'BROKER_URL is required',
    );
  });

  describeVariableTables(loadBridgeConfig, required, INTEGER_VARIABLES, BAD_VALUES);
});
