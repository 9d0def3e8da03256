/**
 * Issue 7, item 12: /metrics and /healthz have no authentication, so the broker's and the bridge's
 * endpoints listen on loopback unless METRICS_HOST / HTTP_HOST say otherwise. Checked on real
 * sockets with the real entry points (`node --import tsx <process>/main.ts`): the endpoint answers
 * on 127.0.0.1 and refuses a connection on the machine's own non-loopback address; with the
 * variable set to 0.0.0.0 (what docker-compose.yml does) the same address answers, so the refusal
 * is the bind address and not a firewall. Before the change both defaulted to 0.0.0.0.
 */
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../devtools/free-port.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { spawnEntryProcess } from '../helpers/entry-process.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const poll = { timeout: 30_000, interval: 100 };

/** The first non-internal IPv4 address of this machine, if it has one. */
const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((address) => address !== undefined && address.family === 'IPv4' && !address.internal)?.address;

let certs: TestCertificates;
let postgres: TestPostgres;
let broker: TestTlsBroker;

beforeAll(async () => {
  [certs, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [], serviceNames: ['bridge'] }),
    startTestPostgres(),
  ]);
  broker = await startTlsBroker({ tls: certs.broker });
});

/** 'open' when a TCP connection to host:port is accepted, else the error code (ECONNREFUSED). */
function probe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('open');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

const metricsAnswer = async (host: string, port: number): Promise<number | string> =>
  fetch(`http://${host}:${port}/metrics`).then(
    (response) => response.status,
    (error: Error) => error.message,
  );

const brokerEnv = (metricsPort: number, extra: Record<string, string> = {}): Record<string, string> => ({
  LOG_LEVEL: 'info',
  BROKER_HOST: '127.0.0.1',
  BROKER_PORT: '0',
  BROKER_TLS_CERT: certs.bundle.broker.certPath,
  BROKER_TLS_KEY: certs.bundle.broker.keyPath,
  BROKER_TLS_CA: certs.bundle.ca.certPath,
  METRICS_PORT: String(metricsPort),
  ...extra,
});

const bridgeEnv = (httpPort: number, extra: Record<string, string> = {}): Record<string, string> => ({
  LOG_LEVEL: 'info',
  DATABASE_URL: postgres.connectionString,
  BROKER_URL: `mqtts://127.0.0.1:${broker.port}`,
  TLS_CA: certs.bundle.ca.certPath,
  TLS_CERT: certs.bundle.services['bridge']!.certPath,
  TLS_KEY: certs.bundle.services['bridge']!.keyPath,
  BRIDGE_CLIENT_ID: 'bridge',
  HTTP_PORT: String(httpPort),
  ...extra,
});

describe.skipIf(externalAddress === undefined)('metrics and health endpoints', () => {
  const external = externalAddress as string;

  it('the broker serves /metrics on loopback only by default, and on every address with METRICS_HOST=0.0.0.0', async () => {
    const port = await freePort();
    const child = spawnEntryProcess('broker/main.ts', brokerEnv(port), { environment: 'isolated' });
    await expect.poll(() => metricsAnswer('127.0.0.1', port), poll).toBe(200);
    expect(await probe(external, port)).toBe('ECONNREFUSED');
    child.kill('SIGTERM');
    await child.exited;

    const open = await freePort();
    spawnEntryProcess('broker/main.ts', brokerEnv(open, { METRICS_HOST: '0.0.0.0' }), { environment: 'isolated' });
    await expect.poll(() => metricsAnswer(external, open), poll).toBe(200);
  });

  it('the bridge serves /metrics and /healthz on loopback only by default, and on every address with HTTP_HOST=0.0.0.0', async () => {
    const port = await freePort();
    const child = spawnEntryProcess('bridge/main.ts', bridgeEnv(port), { environment: 'isolated' });
    await child.waitForLog('bridge started', 60_000);
    expect(await metricsAnswer('127.0.0.1', port)).toBe(200);
    expect(await probe(external, port)).toBe('ECONNREFUSED');
    child.kill('SIGTERM');
    await child.exited;

    const open = await freePort();
    const second = spawnEntryProcess('bridge/main.ts', bridgeEnv(open, { HTTP_HOST: '0.0.0.0' }), {
      environment: 'isolated',
    });
    await second.waitForLog('bridge started', 60_000);
    expect(await metricsAnswer(external, open)).toBe(200);
  });
});
