import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadEdgeConfig } from '../../edge/config.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const directory = tempDirectory('edge-config');

describe('loadEdgeConfig', () => {
  it('fills in the defaults', () => {
    const { agent, metricsPort } = loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://localhost:1884' });
    expect(agent).toEqual({
      deviceId: TEST_DEVICE_ID,
      dbUrl: `file:.data/edge-${TEST_DEVICE_ID}.db`,
      sensorHost: '127.0.0.1',
      sensorPort: 1883,
      brokerUrl: 'mqtt://localhost:1884',
      ackTimeoutMs: 30_000,
      maxInFlightBatches: 4,
      syncIntervalMs: 30_000,
      historyRetention: { syncedRetentionMs: 72 * 3_600_000, diagnosticsRetentionMs: 30 * 86_400_000 },
    });
    expect(metricsPort).toBeUndefined();
  });

  it('reads the TLS files for mqtts:// and the tuning variables', () => {
    const paths = {
      TLS_CA: join(directory, 'ca.pem'),
      TLS_CERT: join(directory, 'cert.pem'),
      TLS_KEY: join(directory, 'key.pem'),
    };
    for (const [name, path] of Object.entries(paths)) writeFileSync(path, `${name} contents`);
    const { agent, metricsPort } = loadEdgeConfig({
      DEVICE_ID: TEST_DEVICE_ID,
      BROKER_URL: 'mqtts://broker:8883',
      ...paths,
      EDGE_DB_URL: 'file:/var/lib/edge.db',
      SENSOR_PORT: '0',
      ACK_TIMEOUT_MS: '5000',
      MAX_IN_FLIGHT_BATCHES: '2',
      SYNC_INTERVAL_MS: '1000',
      METRICS_PORT: '9464',
      SYNCED_RETENTION_HOURS: '6',
      DIAGNOSTICS_RETENTION_DAYS: '2',
    });
    expect(agent.historyRetention).toEqual({
      syncedRetentionMs: 6 * 3_600_000,
      diagnosticsRetentionMs: 2 * 86_400_000,
    });
    expect(agent.tls?.ca.toString()).toBe('TLS_CA contents');
    expect(agent.tls?.key.toString()).toBe('TLS_KEY contents');
    expect(agent).toMatchObject({
      dbUrl: 'file:/var/lib/edge.db',
      sensorPort: 0,
      ackTimeoutMs: 5000,
      maxInFlightBatches: 2,
      syncIntervalMs: 1000,
    });
    expect(metricsPort).toBe(9464);
  });

  it('explains what is wrong', () => {
    expect(() => loadEdgeConfig({ BROKER_URL: 'mqtts://b:8883' })).toThrow('DEVICE_ID is required');
    expect(() => loadEdgeConfig({ DEVICE_ID: 'edge-1', BROKER_URL: 'mqtts://b:8883' })).toThrow(
      "DEVICE_ID must be a lower-case UUID (the certificate CN), got 'edge-1'",
    );
    expect(() => loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtts://b:8883' })).toThrow(
      'TLS_CA, TLS_CERT and TLS_KEY are all required for an mqtts:// BROKER_URL (mutual TLS)',
    );
    expect(() =>
      loadEdgeConfig({
        DEVICE_ID: TEST_DEVICE_ID,
        BROKER_URL: 'mqtts://b:8883',
        TLS_CA: '/nonexistent/ca.pem',
        TLS_CERT: '/x',
        TLS_KEY: '/y',
      }),
    ).toThrow(/^TLS_CA: cannot read '\/nonexistent\/ca.pem'/);
    expect(() => loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'http://b' })).toThrow(
      /BROKER_URL must look like mqtts:\/\/host:port/,
    );
    expect(() => loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://b:1', SENSOR_PORT: 'x' })).toThrow(
      "SENSOR_PORT must be an integer, got 'x'",
    );
    expect(() =>
      loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://b:1', EDGE_DB_URL: 'libsql://x' }),
    ).toThrow(/EDGE_DB_URL must be a file: URL/);
    // a Node.js timer longer than 2^31 - 1 ms fires after 1 ms: every batch would time out at once
    expect(() =>
      loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://b:1', ACK_TIMEOUT_MS: '3000000000' }),
    ).toThrow('ACK_TIMEOUT_MS must be ≤ 2147483647, got 3000000000');
    expect(() =>
      loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://b:1', SYNC_INTERVAL_MS: '3000000000' }),
    ).toThrow('SYNC_INTERVAL_MS must be ≤ 2147483647, got 3000000000');
  });
});
