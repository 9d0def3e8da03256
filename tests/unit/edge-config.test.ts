import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueServerCertificate } from '../../certs/authority.js';
import { MAX_TIMER_MS } from '../../common/env.js';
import { loadEdgeConfig, type EdgeProcessConfig } from '../../edge/config.js';
import { formatPasswordHash, hashPasswordSync, verifyPassword } from '../../edge/ingest/sensor-passwords.js';
import {
  configErrorOf,
  describeVariableTables,
  documentedVariables,
  variablesReadIn,
  type BadValue,
  type IntegerVariable,
} from '../helpers/config-cases.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const directory = tempDirectory('edge-config');

// sensor listener security: a users file, a password file, a server certificate with its key and CA
const FAST_HASH = formatPasswordHash(hashPasswordSync('secret', { ln: 10, r: 8, p: 1 }));
const sensorFiles = {
  users: join(directory, 'sensor-users'),
  badUsers: join(directory, 'sensor-users-bad'),
  password: join(directory, 'sensor-password'),
  emptyPassword: join(directory, 'sensor-password-empty'),
  cert: join(directory, 'sensor.crt'),
  key: join(directory, 'sensor.key'),
  otherKey: join(directory, 'other.key'),
  ca: join(directory, 'sensor-ca.crt'),
};
writeFileSync(sensorFiles.users, `# sensors\nboiler:${FAST_HASH}\ndashboard:${FAST_HASH}:reader:b1,b2\n`);
writeFileSync(sensorFiles.badUsers, `boiler:${FAST_HASH}:admin\n`);
writeFileSync(sensorFiles.password, 'pass word\nignored second line\n');
writeFileSync(sensorFiles.emptyPassword, '\nsecond line\n');
const sensorCa = await createCertificateAuthority({ commonName: 'sensor test CA', validDays: 2 });
const sensorServer = await issueServerCertificate(sensorCa, {
  commonName: 'edge',
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
  validDays: 2,
});
writeFileSync(sensorFiles.cert, sensorServer.certPem);
writeFileSync(sensorFiles.key, sensorServer.keyPem);
writeFileSync(sensorFiles.otherKey, sensorCa.keyPem);
writeFileSync(sensorFiles.ca, sensorCa.certPem);

describe('loadEdgeConfig', () => {
  it('fills in the defaults', () => {
    const { agent, metricsPort } = loadEdgeConfig({ DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://localhost:1884' });
    expect(agent).toEqual({
      deviceId: TEST_DEVICE_ID,
      dbUrl: `file:.data/edge-${TEST_DEVICE_ID}.db`,
      sensorHost: '127.0.0.1',
      sensorPort: 1883,
      metricsHost: '127.0.0.1',
      brokerUrl: 'mqtt://localhost:1884',
      ackTimeoutMs: 30_000,
      maxInFlightBatches: 4,
      localCommandTimeoutMs: 30_000,
      reportResendMs: 10_000,
      syncIntervalMs: 30_000,
      maxDbBytes: 1024 * 1024 * 1024,
      overflowPolicy: 'reject-new',
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
      EDGE_MAX_DB_BYTES: '67108864',
      EDGE_OVERFLOW_POLICY: 'drop-oldest',
    });
    expect(agent).toMatchObject({ maxDbBytes: 64 * 1024 * 1024, overflowPolicy: 'drop-oldest' });
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

  it('reads the sensor users file, the sensor TLS files, and allows a non-loopback SENSOR_HOST with them', () => {
    const { agent } = loadEdgeConfig({
      DEVICE_ID: TEST_DEVICE_ID,
      BROKER_URL: 'mqtt://localhost:1884',
      SENSOR_HOST: '0.0.0.0',
      SENSOR_USERS_FILE: sensorFiles.users,
      SENSOR_TLS_CERT: sensorFiles.cert,
      SENSOR_TLS_KEY: sensorFiles.key,
      SENSOR_TLS_CA: sensorFiles.ca,
    });
    expect(agent.sensorHost).toBe('0.0.0.0');
    expect(agent.sensorUsers?.map(({ name, role, sensors }) => ({ name, role, sensors }))).toEqual([
      { name: 'boiler', role: 'publisher', sensors: 'any' },
      { name: 'dashboard', role: 'reader', sensors: ['b1', 'b2'] },
    ]);
    expect(agent.sensorTls?.cert.toString()).toBe(sensorServer.certPem);
    expect(agent.sensorTls?.ca?.toString()).toBe(sensorCa.certPem);
    expect(agent.sensorAllowAnonymous).toBeUndefined();
    // client certificates alone are authentication too; TLS without a CA is not
    const certificates = { SENSOR_TLS_CERT: sensorFiles.cert, SENSOR_TLS_KEY: sensorFiles.key };
    expect(
      loadEdgeConfig({ ...required, SENSOR_HOST: '0.0.0.0', ...certificates, SENSOR_TLS_CA: sensorFiles.ca }).agent
        .sensorUsers,
    ).toBeUndefined();
    expect(() => loadEdgeConfig({ ...required, SENSOR_HOST: '0.0.0.0', ...certificates })).toThrow(
      /^SENSOR_HOST=0\.0\.0\.0 is not a loopback address/,
    );
  });

  it('hashes the password of SENSOR_USERNAME and SENSOR_PASSWORD_FILE (its first line) for one user of role both', async () => {
    const { agent } = loadEdgeConfig({
      ...required,
      SENSOR_USERNAME: 'sim',
      SENSOR_PASSWORD_FILE: sensorFiles.password,
    });
    expect(agent.sensorUsers).toHaveLength(1);
    const [user] = agent.sensorUsers ?? [];
    expect(user).toMatchObject({ name: 'sim', role: 'both', sensors: 'any' });
    expect(await verifyPassword('pass word', user!.password)).toBe(true);
    expect(await verifyPassword('pass word\nignored second line', user!.password)).toBe(false);
  });

  it('takes SENSOR_ALLOW_ANONYMOUS=true for a non-loopback SENSOR_HOST without authentication', () => {
    const { agent } = loadEdgeConfig({ ...required, SENSOR_HOST: '10.1.2.3', SENSOR_ALLOW_ANONYMOUS: 'true' });
    expect(agent).toMatchObject({ sensorHost: '10.1.2.3', sensorAllowAnonymous: true });
    expect(loadEdgeConfig({ ...required, SENSOR_ALLOW_ANONYMOUS: 'false' }).agent.sensorAllowAnonymous).toBeUndefined();
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

// ---------------------------------------------------------------------------------------------
// every variable, table-driven

const required = { DEVICE_ID: TEST_DEVICE_ID, BROKER_URL: 'mqtt://broker:1883' };
const tlsNames = ['TLS_CA', 'TLS_CERT', 'TLS_KEY'] as const;
const readable = Object.fromEntries(
  tlsNames.map((name) => {
    const path = join(directory, `readable-${name}.pem`);
    writeFileSync(path, name);
    return [name, path];
  }),
);
const missing = join(directory, 'missing.pem');

const INTEGER_VARIABLES: IntegerVariable<EdgeProcessConfig>[] = [
  { name: 'SENSOR_PORT', min: 0, max: 65_535, fallback: 1883, read: (c) => c.agent.sensorPort },
  { name: 'ACK_TIMEOUT_MS', min: 100, max: MAX_TIMER_MS, fallback: 30_000, read: (c) => c.agent.ackTimeoutMs },
  { name: 'MAX_IN_FLIGHT_BATCHES', min: 1, max: 100, fallback: 4, read: (c) => c.agent.maxInFlightBatches },
  { name: 'SYNC_INTERVAL_MS', min: 100, max: MAX_TIMER_MS, fallback: 30_000, read: (c) => c.agent.syncIntervalMs },
  { name: 'METRICS_PORT', min: 0, max: 65_535, fallback: undefined, read: (c) => c.metricsPort },
  {
    name: 'EDGE_LOCAL_COMMAND_TIMEOUT_MS',
    min: 100,
    max: MAX_TIMER_MS,
    fallback: 30_000,
    read: (c) => c.agent.localCommandTimeoutMs,
  },
  { name: 'EDGE_REPORT_RESEND_MS', min: 100, max: 300_000, fallback: 10_000, read: (c) => c.agent.reportResendMs },
  {
    name: 'SYNCED_RETENTION_HOURS',
    min: 1,
    max: 87_600,
    fallback: 72,
    read: (c) => (c.agent.historyRetention?.syncedRetentionMs ?? Number.NaN) / 3_600_000,
  },
  {
    name: 'DIAGNOSTICS_RETENTION_DAYS',
    min: 1,
    max: 3650,
    fallback: 30,
    read: (c) => (c.agent.historyRetention?.diagnosticsRetentionMs ?? Number.NaN) / 86_400_000,
  },
  { name: 'SHUTDOWN_GRACE_MS', min: 1, max: MAX_TIMER_MS, fallback: 10_000, read: (c) => c.shutdownGraceMs },
  {
    name: 'EDGE_MAX_DB_BYTES',
    min: 4 * 1024 * 1024,
    max: 2 ** 50,
    fallback: 1024 * 1024 * 1024,
    read: (c) => c.agent.maxDbBytes,
  },
];

const BAD_VALUES: BadValue[] = [
  ...['edge-1', TEST_DEVICE_ID.toUpperCase(), `${TEST_DEVICE_ID} `].map((value) => ({
    name: 'DEVICE_ID',
    value,
    message: `DEVICE_ID must be a lower-case UUID (the certificate CN), got '${value}'`,
  })),
  ...['libsql://edge', '/var/lib/edge.db', 'http://x/edge.db'].map((value) => ({
    name: 'EDGE_DB_URL',
    value,
    message: `EDGE_DB_URL must be a file: URL, got '${value}'`,
  })),
  ...['http://0.0.0.0', '0.0.0.0:9464', 'two words'].map((value) => ({
    name: 'METRICS_HOST',
    value,
    message: `METRICS_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...['mqtt://0.0.0.0', '127.0.0.1:1883', 'two words'].map((value) => ({
    name: 'SENSOR_HOST',
    value,
    message: `SENSOR_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...['http://broker:8883', 'broker:8883', 'mqtts://', 'mqtt://broker:1883/path', 'mqtts://broker 8883'].map(
    (value) => ({
      name: 'BROKER_URL',
      value,
      message: `BROKER_URL must look like mqtts://host:port, got '${value}'`,
    }),
  ),
  {
    name: 'BROKER_URL',
    value: 'mqtts://user:hunter2@broker:8883/x',
    message: "BROKER_URL must look like mqtts://host:port, got 'mqtts://***@broker:8883/x'",
  },
  ...tlsNames.map((name) => ({
    name,
    value: missing,
    with: { ...readable, BROKER_URL: 'mqtts://broker:8883' },
    message: `${name}: cannot read '${missing}': ENOENT`,
  })),
  {
    name: 'TLS_CA',
    value: readable['TLS_CA'] ?? '',
    message: 'TLS_CA, TLS_CERT and TLS_KEY must be given together',
  },
  ...['drop-newest', 'REJECT-NEW', 'reject'].map((value) => ({
    name: 'EDGE_OVERFLOW_POLICY',
    value,
    message: `EDGE_OVERFLOW_POLICY must be reject-new or drop-oldest, got '${value}'`,
  })),
  ...['0.0.0.0', '::', '10.1.2.3', 'edge-1'].map((value) => ({
    name: 'SENSOR_HOST',
    value,
    message: new RegExp(
      `^SENSOR_HOST=${value.replace(/\./g, '\\.')} is not a loopback address and the sensor listener has no authentication: ` +
        'anyone who can reach it can publish readings and read sensors/#\\. Configure SENSOR_USERS_FILE \\(or SENSOR_USERNAME ' +
        'and SENSOR_PASSWORD_FILE\\) or client certificates \\(SENSOR_TLS_CERT, SENSOR_TLS_KEY, SENSOR_TLS_CA\\), or set ' +
        'SENSOR_ALLOW_ANONYMOUS=true to accept the risk$',
    ),
  })),
  { name: 'SENSOR_USERS_FILE', value: missing, message: `SENSOR_USERS_FILE: cannot read '${missing}': ENOENT` },
  {
    name: 'SENSOR_USERS_FILE',
    value: sensorFiles.badUsers,
    message: `SENSOR_USERS_FILE '${sensorFiles.badUsers}': line 1 (user 'boiler'): the role must be one of publisher, reader, both, app`,
  },
  {
    name: 'SENSOR_USERS_FILE',
    value: sensorFiles.users,
    with: { SENSOR_USERNAME: 'sim', SENSOR_PASSWORD_FILE: sensorFiles.password },
    message: 'SENSOR_USERS_FILE excludes SENSOR_USERNAME and SENSOR_PASSWORD_FILE: give one or the other',
  },
  {
    name: 'SENSOR_USERNAME',
    value: 'sim',
    message: 'SENSOR_USERNAME and SENSOR_PASSWORD_FILE must be given together',
  },
  ...['two words', 'a:b', 'x'.repeat(65)].map((value) => ({
    name: 'SENSOR_USERNAME',
    value,
    with: { SENSOR_PASSWORD_FILE: sensorFiles.password },
    message: `SENSOR_USERNAME must be 1-64 characters of A-Z a-z 0-9 _ . @ -, got '${value}'`,
  })),
  {
    name: 'SENSOR_PASSWORD_FILE',
    value: sensorFiles.password,
    message: 'SENSOR_USERNAME and SENSOR_PASSWORD_FILE must be given together',
  },
  {
    name: 'SENSOR_PASSWORD_FILE',
    value: missing,
    with: { SENSOR_USERNAME: 'sim' },
    message: `SENSOR_PASSWORD_FILE: cannot read '${missing}': ENOENT`,
  },
  {
    name: 'SENSOR_PASSWORD_FILE',
    value: sensorFiles.emptyPassword,
    with: { SENSOR_USERNAME: 'sim' },
    message: `SENSOR_PASSWORD_FILE: the first line of '${sensorFiles.emptyPassword}' is empty`,
  },
  {
    name: 'SENSOR_TLS_CERT',
    value: sensorFiles.cert,
    message: 'SENSOR_TLS_CERT and SENSOR_TLS_KEY must be given together',
  },
  {
    name: 'SENSOR_TLS_CERT',
    value: missing,
    with: { SENSOR_TLS_KEY: sensorFiles.key },
    message: `SENSOR_TLS_CERT: cannot read '${missing}': ENOENT`,
  },
  {
    name: 'SENSOR_TLS_KEY',
    value: sensorFiles.otherKey,
    with: { SENSOR_TLS_CERT: sensorFiles.cert },
    message: /^SENSOR_TLS_CERT and SENSOR_TLS_KEY are not a usable certificate, key and CA: .*key values mismatch/,
  },
  {
    name: 'SENSOR_TLS_KEY',
    value: missing,
    with: { SENSOR_TLS_CERT: sensorFiles.cert },
    message: `SENSOR_TLS_KEY: cannot read '${missing}': ENOENT`,
  },
  {
    name: 'SENSOR_TLS_CA',
    value: sensorFiles.ca,
    message: "SENSOR_TLS_CA needs SENSOR_TLS_CERT and SENSOR_TLS_KEY (the listener's own certificate)",
  },
  {
    name: 'SENSOR_TLS_CA',
    value: missing,
    with: { SENSOR_TLS_CERT: sensorFiles.cert, SENSOR_TLS_KEY: sensorFiles.key },
    message: `SENSOR_TLS_CA: cannot read '${missing}': ENOENT`,
  },
  ...['maybe', 'TRUE!', '2'].map((value) => ({
    name: 'SENSOR_ALLOW_ANONYMOUS',
    value,
    message: `SENSOR_ALLOW_ANONYMOUS must be true or false, got '${value}'`,
  })),
  {
    name: 'SENSOR_ALLOW_ANONYMOUS',
    value: 'true',
    with: { SENSOR_USERS_FILE: sensorFiles.users },
    message:
      'SENSOR_ALLOW_ANONYMOUS=true contradicts the sensor authentication configured ' +
      '(SENSOR_USERS_FILE, SENSOR_USERNAME or SENSOR_TLS_CA): anonymous sensors would be refused anyway',
  },
];

describe('edge environment, variable by variable', () => {
  it('has a test table entry for exactly the variables edge/config.ts documents and reads', () => {
    const tested = [...new Set([...INTEGER_VARIABLES.map((v) => v.name), ...BAD_VALUES.map((v) => v.name)])].sort();
    expect(tested).toEqual(documentedVariables('edge/config.ts'));
    expect(variablesReadIn('edge/config.ts')).toEqual(documentedVariables('edge/config.ts'));
  });

  it('takes an empty DEVICE_ID or BROKER_URL as missing', () => {
    expect(configErrorOf(() => loadEdgeConfig({ ...required, DEVICE_ID: '' })).message).toBe('DEVICE_ID is required');
    expect(configErrorOf(() => loadEdgeConfig({ ...required, BROKER_URL: '' })).message).toBe('BROKER_URL is required');
  });

  describeVariableTables(loadEdgeConfig, required, INTEGER_VARIABLES, BAD_VALUES);
});
