import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBridgeConfig } from '../../bridge/config.js';
import { ConfigError } from '../../common/env.js';
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
      dbPoolSize: 10,
      dbQueryTimeoutMs: 60_000,
      retentionDays: 90,
      retentionIntervalMs: 3_600_000,
      retentionChunkSize: 1000,
      http: { host: '0.0.0.0', port: 9464 },
    });
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
