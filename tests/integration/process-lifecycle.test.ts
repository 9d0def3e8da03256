/**
 * The three entry points as real child processes (`node --import tsx <process>/main.ts`), the way
 * they are deployed, checking common/process-lifecycle.ts end to end:
 * - a bad environment stops each process before it starts anything, with exit code 1 and the
 *   ConfigError's message on stderr (plain) and in the fatal log line;
 * - SIGTERM closes each process cleanly: "<name> shutting down", "<name> closed", exit code 0
 *   (exit 0 also proves the close finished within the grace period: past it the code is 1).
 * The broker the bridge and the edge agent connect to runs in this process, over mutual TLS with
 * test certificates; the bridge writes to a real (embedded) PostgreSQL.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../devtools/free-port.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { spawnEntryProcess, type EntryProcess } from '../helpers/entry-process.js';
import { connectClient, closed } from '../helpers/mqtt-client.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICE = '3f9d2c1b-7a6e-4d5c-8b4a-1e2f3a4b5c6d';

let certs: TestCertificates;
let postgres: TestPostgres;
let broker: TestTlsBroker;
const workDir = tempDirectory('process-lifecycle');

beforeAll(async () => {
  [certs, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge'] }),
    startTestPostgres(),
  ]);
  broker = await startTlsBroker({ tls: certs.broker });
});

/** Runs an entry point with exactly `env` (plus PATH, HOME, TMPDIR): nothing leaks from the test's environment. */
const run = (entry: string, env: Record<string, string>): EntryProcess =>
  spawnEntryProcess(entry, { LOG_LEVEL: 'info', ...env }, { environment: 'isolated' });

const brokerEnv = (): Record<string, string> => ({
  BROKER_HOST: '127.0.0.1',
  BROKER_PORT: '0',
  BROKER_TLS_CERT: certs.bundle.broker.certPath,
  BROKER_TLS_KEY: certs.bundle.broker.keyPath,
  BROKER_TLS_CA: certs.bundle.ca.certPath,
});

const bridgeEnv = (): Record<string, string> => ({
  DATABASE_URL: postgres.connectionString,
  BROKER_URL: `mqtts://127.0.0.1:${broker.port}`,
  TLS_CA: certs.bundle.ca.certPath,
  TLS_CERT: certs.bundle.services['bridge']!.certPath,
  TLS_KEY: certs.bundle.services['bridge']!.keyPath,
  BRIDGE_CLIENT_ID: 'bridge',
  HTTP_HOST: '127.0.0.1',
  HTTP_PORT: '0',
});

const edgeEnv = (): Record<string, string> => ({
  DEVICE_ID: DEVICE,
  EDGE_DB_URL: `file:${join(workDir, 'edge.db')}`,
  SENSOR_HOST: '127.0.0.1',
  SENSOR_PORT: '0',
  BROKER_URL: `mqtts://127.0.0.1:${broker.port}`,
  TLS_CA: certs.bundle.ca.certPath,
  TLS_CERT: certs.bundle.devices[DEVICE]!.certPath,
  TLS_KEY: certs.bundle.devices[DEVICE]!.keyPath,
});

describe('a process with a bad environment', () => {
  const cases = [
    {
      entry: 'broker/main.ts',
      env: () => ({ ...brokerEnv(), BROKER_PORT: '1e3' }),
      line: "broker failed to start: BROKER_PORT must be an integer, got '1e3' (decimal digits only)",
    },
    {
      entry: 'broker/main.ts',
      env: () => ({ ...brokerEnv(), BROKER_TLS_KEY: join(workDir, 'no-such.key') }),
      line: `broker failed to start: BROKER_TLS_KEY: cannot read '${join(workDir, 'no-such.key')}': ENOENT`,
    },
    {
      entry: 'edge/main.ts',
      env: () => ({ ...edgeEnv(), DEVICE_ID: 'edge-1' }),
      line: "edge agent failed to start: DEVICE_ID must be a lower-case UUID (the certificate CN), got 'edge-1'",
    },
    {
      entry: 'edge/main.ts',
      env: () => ({ ...edgeEnv(), SYNC_INTERVAL_MS: '-5' }),
      line: 'edge agent failed to start: SYNC_INTERVAL_MS must be ≥ 100, got -5',
    },
    {
      entry: 'edge/main.ts',
      env: () => ({ ...edgeEnv(), SENSOR_HOST: '0.0.0.0' }),
      line:
        'edge agent failed to start: SENSOR_HOST=0.0.0.0 is not a loopback address and the sensor listener has no ' +
        'authentication: anyone who can reach it can publish readings and read sensors/#. Configure SENSOR_USERS_FILE ' +
        '(or SENSOR_USERNAME and SENSOR_PASSWORD_FILE) or client certificates (SENSOR_TLS_CERT, SENSOR_TLS_KEY, ' +
        'SENSOR_TLS_CA), or set SENSOR_ALLOW_ANONYMOUS=true to accept the risk',
    },
    {
      entry: 'bridge/main.ts',
      env: () => ({ ...bridgeEnv(), DATABASE_URL: 'mysql://root:hunter2@db/x' }),
      line: "bridge failed to start: DATABASE_URL must be a postgres:// or postgresql:// URL, got 'mysql://***@db/x'",
    },
    {
      entry: 'bridge/main.ts',
      env: () => ({ ...bridgeEnv(), HTTP_PORT: '0x10' }),
      line: "bridge failed to start: HTTP_PORT must be an integer, got '0x10' (decimal digits only)",
    },
  ];

  it.each(cases.map((c) => [c.entry, c.line, c] as const))(
    '%s exits 1 and prints "%s"',
    async (entry, line, { env }) => {
      const child = run(entry, env());
      const { code } = await child.exited;
      expect(code).toBe(1);
      expect(child.stderr()).toBe(`${line}\n`);
      expect(child.logs).toEqual([expect.objectContaining({ level: 60, msg: line })]);
      expect(child.stderr()).not.toContain('hunter2');
    },
  );

  it('bridge exits 1 with the reason when the database refuses the connection at start-up', async () => {
    const closedPort = await freePort();
    const child = run('bridge/main.ts', {
      ...bridgeEnv(),
      DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${closedPort}/postgres`,
    });
    const { code } = await child.exited;
    expect(code).toBe(1);
    expect(child.stderr()).toMatch(/^bridge failed to start: .*ECONNREFUSED/);
  });
});

describe('SIGTERM', () => {
  it('closes the broker with a device connected, logs "broker shutting down" and "broker closed", exits 0', async () => {
    const child = run('broker/main.ts', brokerEnv());
    const listening = await child.waitForLog('broker listening (MQTT over mutual TLS)');
    const device = await connectClient(`mqtts://127.0.0.1:${String(listening['port'])}`, {
      ...certs.devices[DEVICE]!,
      clientId: DEVICE,
    });
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    await closed(device);
    expect(child.logs.map((line) => line.msg)).toEqual(
      expect.arrayContaining(['broker shutting down', 'broker closed']),
    );
    expect(child.stderr()).toBe('');
  });

  it('closes the bridge connected to the broker and PostgreSQL, logs "bridge closed", exits 0', async () => {
    const child = run('bridge/main.ts', bridgeEnv());
    await child.waitForLog('bridge started');
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.logs.map((line) => line.msg)).toEqual(
      expect.arrayContaining(['bridge shutting down', 'bridge closed']),
    );
    expect(child.stderr()).toBe('');
  });

  it('closes the edge agent with its uplink connected, logs "edge agent closed", exits 0', async () => {
    const child = run('edge/main.ts', edgeEnv());
    await child.waitForLog('edge agent started');
    await child.waitForLog('uplink connected');
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.logs.map((line) => line.msg)).toEqual(
      expect.arrayContaining(['edge agent shutting down', 'edge agent closed']),
    );
    expect(child.stderr()).toBe('');
  });
});
