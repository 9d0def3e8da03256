/**
 * Certificate revocation end to end (G9): the certs CLI writes to PostgreSQL (SERIALIZABLE), the
 * bridge polls the table and publishes the list on control/revocations, and every node of a
 * two-node broker cluster (real Redis, real TLS) closes the revoked certificate's connections and
 * refuses it; a node started later and a standalone broker with the exported CRL refuse it too.
 * The CRL is checked with openssl.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRedisBackends } from '../../broker/cluster-backends.js';
import type { RunningBroker } from '../../broker/server.js';
import { issueClientCertificate } from '../../certs/authority.js';
import { runCertificateCli } from '../../certs/cli.js';
import { openCertificateAuthority } from '../../certs/dev-bundle.js';
import { CONTROL_REVOCATIONS_TOPIC, topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates, type TlsFiles } from '../helpers/certs.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { capturedLogger, type LogLine } from '../helpers/logger.js';
import { closed, openClient } from '../helpers/mqtt-client.js';
import { collectMessages, DELIVERY_POLL, subscribeGranted, waitForPayload } from '../helpers/mqtt-observe.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { startTlsBroker } from '../helpers/tls-broker.js';
import { waitFor } from '../helpers/wait.js';

const STOLEN = '7b3e9f10-2c4d-4a5b-8e6f-1a2b3c4d5e6f';
const KEPT = '2d4f6a8c-1e3b-4c5d-9f7a-8b6c4d2e0f1a';
const WAIT_MS = 15_000;

let certs: TestCertificates;
let redis: TestRedis;
let postgres: TestPostgres;
let nodeA: RunningBroker;
let nodeB: RunningBroker;
const { logger: baseLogger, logged } = capturedLogger();
/** pino's time field: ms since the epoch */
const timeOf = (line: LogLine | undefined): number => line?.time as number;

async function startNode(node: string): Promise<RunningBroker> {
  const logger = baseLogger.child({ node });
  return startTlsBroker({
    tls: certs.broker,
    metricsPort: 0,
    brokerId: node,
    heartbeatIntervalMs: 1_000,
    logger,
    backends: await createRedisBackends(redis.url, logger),
  });
}

beforeAll(async () => {
  [certs, redis, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [STOLEN, KEPT], serviceNames: ['bridge', 'ops'], observerNames: ['explorer'] }),
    startTestRedis(),
    startTestPostgres(),
  ]);
  [nodeA, nodeB] = await Promise.all([startNode('node-a'), startNode('node-b')]);
  const service = certs.services.bridge!;
  await startBridgeService(
    {
      databaseUrl: postgres.connectionString,
      brokerUrl: `mqtts://127.0.0.1:${nodeB.port}`,
      tls: { ca: service.ca, cert: service.cert, key: service.key },
      clientId: 'bridge',
      dbPoolSize: 2,
    },
    baseLogger.child({ node: 'bridge' }),
  );
});

// ---------------------------------------------------------------------------------------------
// helpers

type Outcome = { connected: true; client: MqttClient } | { connected: false; code: number | undefined };

function attempt(broker: RunningBroker, material: TlsFiles, clientId: string, extra: IClientOptions = {}) {
  const client = openClient(`mqtts://127.0.0.1:${broker.port}`, {
    ...material,
    clientId,
    connectTimeout: WAIT_MS,
    ...extra,
  });
  return new Promise<Outcome>((resolve) => {
    let code: number | undefined;
    client.on('error', (error: Error & { code?: unknown }) => {
      if (typeof error.code === 'number') code = error.code;
    });
    client.once('connect', () => resolve({ connected: true, client }));
    client.once('close', () => resolve({ connected: false, code }));
  });
}

async function connect(broker: RunningBroker, material: TlsFiles, clientId: string): Promise<MqttClient> {
  const outcome = await attempt(broker, material, clientId);
  if (!outcome.connected) throw new Error(`${clientId} could not connect (CONNACK ${outcome.code})`);
  return outcome.client;
}

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCertificateCli(
    argv,
    { log: (line) => out.push(line), error: (line) => err.push(line) },
    { DATABASE_URL: postgres.connectionString },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

async function scrape(broker: RunningBroker): Promise<(series: string) => number> {
  const text = await (await fetch(`http://127.0.0.1:${broker.metricsPort}/metrics`)).text();
  return (series) => {
    const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
}

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, (error, stdout, stderr) =>
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr }),
    );
  });
}

// ---------------------------------------------------------------------------------------------

describe('revoking a device certificate', () => {
  it('closes its connection on node A and refuses it on node B within seconds; another device stays connected', async () => {
    const watcher = await connect(nodeB, certs.services.ops!, 'ops');
    expect(await subscribeGranted(watcher, [topics.status(STOLEN)])).toEqual([1]);
    const statuses = collectMessages(watcher);
    const will = JSON.stringify({ online: false, at: new Date().toISOString() });
    const stolenOutcome = await attempt(nodeA, certs.devices[STOLEN]!, STOLEN, {
      will: { topic: topics.status(STOLEN), payload: Buffer.from(will), qos: 1, retain: true },
    });
    if (!stolenOutcome.connected) throw new Error('the stolen certificate could not connect before its revocation');
    const stolen = stolenOutcome.client;
    const kept = await connect(nodeA, certs.devices[KEPT]!, KEPT);
    const [beforeA, beforeB] = await Promise.all([scrape(nodeA), scrape(nodeB)]);

    const revoked = await cli('revoke', '--cert', certs.bundle.devices[STOLEN]!.certPath, '--reason', 'keyCompromise');
    expect(revoked).toMatchObject({ code: 0 });
    expect(revoked.out).toMatch(new RegExp(`^revoked [0-9a-f]+ CN=${STOLEN} \\(keyCompromise\\)`));

    await closed(stolen, WAIT_MS);
    const disconnected = logged('certificate revoked: disconnecting the client', { node: 'node-a', clientId: STOLEN });
    expect(disconnected).toHaveLength(1);

    const refused = await attempt(nodeB, certs.devices[STOLEN]!, STOLEN);
    expect(refused).toEqual({ connected: false, code: 5 });
    expect(logged('connection refused', { node: 'node-b', clientId: STOLEN, code: 'revoked' })).toHaveLength(1);

    // a revoked identity publishes nothing, not even its will
    expect(logged('will dropped', { node: 'node-a', clientId: STOLEN })).toHaveLength(1);
    const marker = JSON.stringify({ online: true, at: '2001-01-01T00:00:00.000Z' });
    await watcher.publishAsync(topics.status(STOLEN), marker, { qos: 1 });
    await waitForPayload(statuses, marker);
    expect(statuses.map((message) => message.payload)).toEqual([marker]);

    // the other device was not touched and still publishes
    expect(kept.connected).toBe(true);
    await kept.publishAsync(topics.telemetry(KEPT), JSON.stringify({ batchId: 'still-here', records: [] }), { qos: 1 });

    const [afterA, afterB] = await Promise.all([scrape(nodeA), scrape(nodeB)]);
    expect(
      afterA('mqtt_broker_disconnects_total{reason="revoked"}') -
        beforeA('mqtt_broker_disconnects_total{reason="revoked"}'),
    ).toBe(1);
    expect(
      afterB('mqtt_broker_refused_connections_total{reason="revoked"}') -
        beforeB('mqtt_broker_refused_connections_total{reason="revoked"}'),
    ).toBe(1);
    expect(afterA('mqtt_broker_revoked_certificates')).toBe(1);
    expect(afterB('mqtt_broker_revoked_certificates')).toBe(1);

    // from the row's revoked_at (the database's clock, same machine) to the log lines
    const listed = await cli('revocations');
    const revokedAt = Date.parse(listed.out.split('  ')[0] ?? '');
    const published = logged('revocation list published', { node: 'bridge' }).find((line) => timeOf(line) >= revokedAt);
    const applied = logged('revocation list applied', { node: 'node-b' }).find((line) => timeOf(line) >= revokedAt);
    console.log(
      `revocation → list published by the bridge ${timeOf(published) - revokedAt} ms → applied on node B ` +
        `${timeOf(applied) - revokedAt} ms → connection closed on node A ${timeOf(disconnected[0]) - revokedAt} ms`,
    );
    expect(timeOf(disconnected[0])).toBeGreaterThanOrEqual(revokedAt);
  });
});

describe('a revoked certificate', () => {
  it('is refused at once by a broker node that starts after the revocation (the retained list in Redis)', async () => {
    await waitFor(
      'the revocation of the first test',
      () => cli('revocations'),
      (listed) => listed.out.includes(STOLEN),
    );
    const nodeC = await startNode('node-c');
    expect(logged('revocation list applied', { node: 'node-c', source: 'retained' })).toHaveLength(1);
    expect(await attempt(nodeC, certs.devices[STOLEN]!, STOLEN)).toEqual({ connected: false, code: 5 });
    expect((await attempt(nodeC, certs.devices[KEPT]!, KEPT)).connected).toBe(true);
  });

  it('does not keep the device out: a new certificate for the same device id connects, the stolen one does not', async () => {
    const opened = await openCertificateAuthority(certs.dir, { createIfMissing: false });
    const fresh = await issueClientCertificate(opened.authority, { commonName: STOLEN, role: 'device', validDays: 2 });
    const material = { ca: certs.ca, cert: Buffer.from(fresh.certPem), key: Buffer.from(fresh.keyPem) };
    const device = await connect(nodeA, material, STOLEN);
    await device.publishAsync(topics.status(STOLEN), JSON.stringify({ online: true, at: new Date().toISOString() }), {
      qos: 1,
      retain: true,
    });
    // the thief cannot take the session over again
    expect(await attempt(nodeB, certs.devices[STOLEN]!, STOLEN)).toEqual({ connected: false, code: 5 });
    expect(device.connected).toBe(true);
  });
});

describe('a standalone broker that restarts', () => {
  it('gets the list again from the bridge when the bridge reconnects (nothing was retained across the restart)', async () => {
    const standaloneLogger = baseLogger.child({ node: 'restarting' });
    const first = await startTlsBroker({ tls: certs.broker, logger: standaloneLogger });
    const port = first.port;
    const service = certs.services.ops!;
    await startBridgeService(
      {
        databaseUrl: postgres.connectionString,
        brokerUrl: `mqtts://127.0.0.1:${port}`,
        tls: { ca: service.ca, cert: service.cert, key: service.key },
        clientId: 'ops',
        dbPoolSize: 2,
      },
      baseLogger.child({ node: 'bridge-ops' }),
    );
    await waitFor(
      'the list on the first broker',
      () => attempt(first, certs.devices[STOLEN]!, STOLEN),
      (outcome) => !outcome.connected,
    );
    await first.close();
    const restarted = await startTlsBroker({ tls: certs.broker, port, logger: standaloneLogger });
    const refused = await waitFor(
      'the bridge to publish the list again after reconnecting',
      () => attempt(restarted, certs.devices[STOLEN]!, STOLEN),
      (outcome) => !outcome.connected,
    );
    expect(refused).toEqual({ connected: false, code: 5 });
  });
});

describe('the CRL', () => {
  it('exported by the CLI is read by openssl, verifies against the CA, and makes a standalone broker refuse the certificate from start', async () => {
    const file = join(certs.dir, 'revoked.crl');
    const exported = await cli('crl', '--out', file, '--dir', certs.dir, '--days', '2');
    expect(exported).toMatchObject({ code: 0 });
    expect(exported.out).toMatch(/: 1 revoked certificate\(s\), signed by /);

    const text = await run('openssl', ['crl', '-in', file, '-noout', '-text']);
    expect(text.code).toBe(0);
    const serial = (await cli('revocations')).out.split('  ')[1] ?? '';
    const openSslSerial = (serial.length % 2 === 0 ? serial : `0${serial}`).toUpperCase();
    expect(text.stdout).toContain(`Serial Number: ${openSslSerial}`);
    expect(text.stdout).toContain('Key Compromise');
    expect(text.stdout).toContain('Issuer: CN = mqtt-edge-sync development CA');
    const verified = await run('openssl', ['crl', '-in', file, '-CAfile', certs.bundle.ca.certPath, '-noout']);
    expect(`${verified.stdout}${verified.stderr}`).toContain('verify OK');

    // no Redis, no bridge: only the file
    const standalone = await startTlsBroker({
      tls: certs.broker,
      crl: { source: file, content: await readFile(file) },
      logger: baseLogger.child({ node: 'standalone' }),
    });
    expect(await attempt(standalone, certs.devices[STOLEN]!, STOLEN)).toEqual({ connected: false, code: 5 });
    expect((await attempt(standalone, certs.devices[KEPT]!, KEPT)).connected).toBe(true);
    expect(logged('revocation list loaded from the CRL file', { node: 'standalone', count: 1 })).toHaveLength(1);
  });

  it('signed by another CA stops the broker from starting', async () => {
    const rogueDir = join(certs.dir, 'rogue');
    expect((await cli('init', '--dir', rogueDir)).code).toBe(0);
    const file = join(rogueDir, 'rogue.crl');
    expect((await cli('crl', '--out', file, '--dir', rogueDir)).code).toBe(0);
    await expect(
      startTlsBroker({
        tls: certs.broker,
        crl: { source: file, content: await readFile(file) },
        logger: baseLogger.child({ node: 'rogue' }),
      }),
    ).rejects.toThrow(`the CRL ${file} is unusable: the CRL is not signed by the CA`);
  });
});

describe('the control topic', () => {
  it('can be published by the service role only, and read by no client', async () => {
    const observer = await connect(nodeA, certs.observers.explorer!, 'explorer');
    expect(await subscribeGranted(observer, [CONTROL_REVOCATIONS_TOPIC, 'control/#', '#'])).toEqual([128, 128, 128]);

    const device = await connect(nodeA, certs.devices[KEPT]!, KEPT);
    device.publish(CONTROL_REVOCATIONS_TOPIC, JSON.stringify({ generatedAt: new Date().toISOString(), serials: [] }), {
      qos: 1,
      retain: true,
    });
    await closed(device, WAIT_MS);
    expect(
      logged('publish denied, closing the connection', { node: 'node-a', clientId: KEPT }).at(-1)?.reason,
    ).toContain('only the service role may publish');
    // the list in force is unchanged
    expect((await scrape(nodeA))('mqtt_broker_revoked_certificates')).toBe(1);
  });

  it('drops a malformed list from the service role: not retained, not applied', async () => {
    const service = await connect(nodeB, certs.services.ops!, 'ops');
    await service.publishAsync(CONTROL_REVOCATIONS_TOPIC, '{"serials":"all"}', { qos: 1, retain: true });
    await expect
      .poll(() => logged('publish dropped: payload refused', { node: 'node-b', topic: CONTROL_REVOCATIONS_TOPIC }), {
        ...DELIVERY_POLL,
        timeout: WAIT_MS,
      })
      .not.toHaveLength(0);
    const nodeD = await startNode('node-d');
    expect((await scrape(nodeD))('mqtt_broker_revoked_certificates')).toBe(1);
  });
});
