/**
 * G6 end to end with the real things on both sides, for the first time: the real edge agent
 * (startEdgeAgent, libSQL file, local listener) reaching the real mutual-TLS broker (ACL) through
 * a cuttable TCP proxy, the real bridge service with its downstream side and its REST API (mutual
 * TLS), PostgreSQL at SERIALIZABLE. Commands and config are created through the REST API or the
 * service layer; what is proved is what docs/contract.md (Commands, Config) promises: the whole
 * lifecycle in both databases, never `delivered` while offline, expiry and cancel while offline,
 * exactly-once execution across redelivery and restarts, config that never downgrades, a lost
 * retained store healed, the HTTP fallback ingesting like MQTT, no device reaching another's
 * commands, and every bad input refused with a reason without blocking what comes after it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { MqttClient } from 'mqtt';
import type { Database } from '../../bridge/db/connection.js';
import { startBridge, type RunningBridge } from '../../bridge/service.js';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { INTERRUPTED_REASON } from '../../edge/downstream/downstream.js';
import type { SyncAck } from '../../schemas/messages.js';
import type { BackoffPolicy } from '../../common/retry-policy.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../../edge/agent.js';
import { topics } from '../../schemas/topics.js';
import { apiClient, errorOf, type ApiClient } from '../helpers/api-client.js';
import { bridgeServiceConfig, downstreamBridgeConfig } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { tempDatabase } from '../helpers/edge-temp-db.js';
import { testLogger } from '../helpers/logger.js';
import { closed, connectClient } from '../helpers/mqtt-client.js';
import { collectMessages, subscribeGranted, type ReceivedMessage } from '../helpers/mqtt-observe.js';
import {
  openTestDatabase,
  startTestPostgres,
  storedCommand,
  type StoredCommand,
  type TestPostgres,
} from '../helpers/postgres.js';
import { registerCleanup } from '../helpers/teardown.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { connectTelemetryDevice } from '../helpers/telemetry-device.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE_A = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const DEVICE_B = '1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e';
/** no edge agent: speaks MQTT directly (the HTTP fallback comparison) */
const DEVICE_MQTT = '2c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f';
const DEVICE_HTTP = '3d4e5f6a-7b8c-4d9e-9f0a-2b3c4d5e6f7a';
const ALL_DEVICES = [DEVICE_A, DEVICE_B, DEVICE_MQTT, DEVICE_HTTP];
const FAST_RECONNECT: BackoffPolicy = { initialDelayMs: 50, maxDelayMs: 500, multiplier: 2, jitter: 'equal' };
/** edge → broker → bridge → PostgreSQL → broker → edge, on a loaded 2-core machine */
const poll = { timeout: 30_000, interval: 50 };

let certs: TestCertificates;
let postgres: TestPostgres;
let db: Database;
let broker: RunningBroker & { url: string };
let bridge: RunningBridge;
let api: string;
let operator: ApiClient;

/**
 * The bridge and the broker are restarted by some tests, so they are closed after the file (afterAll),
 * not at the end of the test that started them.
 */
async function startSystemBridge(): Promise<RunningBridge> {
  const started = await startBridge(
    bridgeServiceConfig(
      downstreamBridgeConfig({
        databaseUrl: postgres.connectionString,
        brokerUrl: broker.url,
        certs,
        dbPoolSize: 5,
        http: { host: '127.0.0.1', port: 0 },
        api: { host: '127.0.0.1', port: 0, tls: certs.broker },
      }),
    ),
    { logger: testLogger('bridge') },
  );
  if (started.api === null) throw new Error('the bridge did not start its API');
  api = started.api.url;
  operator = apiClient(api, certs.operators['alice']!);
  return started;
}

/** The real broker (in-memory Aedes: a restart loses every retained message) on `port` (0: a free one). */
async function startSystemBroker(port = 0): Promise<RunningBroker & { url: string }> {
  const started = await startBroker({ tls: certs.broker, host: '127.0.0.1', port, logger: testLogger('broker') });
  return Object.assign(started, { url: `mqtts://127.0.0.1:${started.port}` });
}

async function restartBridge(): Promise<void> {
  await bridge.close();
  bridge = await startSystemBridge();
}

/** Restarts the broker on its port without its retained store; the bridge's reconciliation rebuilds it. */
async function restartBrokerEmpty(): Promise<void> {
  const port = broker.port;
  await broker.close();
  broker = await startSystemBroker(port);
}

afterAll(async () => {
  await bridge.close();
  await broker.close();
});

beforeAll(async () => {
  const [generated, started] = await Promise.all([
    createTestCertificates({
      deviceIds: ALL_DEVICES,
      serviceNames: ['bridge', 'admin'],
      operatorNames: ['alice'],
      observerNames: ['explorer'],
    }),
    startTestPostgres(),
  ]);
  certs = generated;
  postgres = started;
  db = await openTestDatabase(postgres, 'e2e-downstream-test', { poolSize: 3 });
  broker = await startSystemBroker();
  // the bridge migrates the schema at start
  bridge = await startSystemBridge();
  for (const deviceId of ALL_DEVICES) {
    await db.none(`INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, $1, 'edge')`, [deviceId]);
  }
}, 90_000);

interface Edge {
  agent: EdgeAgent;
  uplink: TcpProxy;
  reader: Client;
  dbUrl: string;
  /** stops the agent (gracefully) */
  stop(): Promise<void>;
}

async function startEdge(
  deviceId: string,
  overrides: Partial<EdgeAgentConfig> = {},
  reuse?: { dbUrl: string; reader: Client; uplink: TcpProxy },
): Promise<Edge> {
  const database = reuse === undefined ? tempDatabase('e2e-downstream') : undefined;
  const dbUrl = reuse?.dbUrl ?? database!.url;
  let uplink = reuse?.uplink;
  if (uplink === undefined) {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
    registerCleanup(() => proxy.close());
    uplink = proxy;
  }
  const agent = await startEdgeAgent({
    deviceId,
    dbUrl,
    sensorPort: 0,
    brokerUrl: `mqtts://127.0.0.1:${uplink.port}`,
    tls: certs.devices[deviceId]!,
    syncIntervalMs: 60_000,
    sendLingerMs: 10,
    reconnectPolicy: FAST_RECONNECT,
    reportResendMs: 300,
    localCommandTimeoutMs: 20_000,
    logger: testLogger(`edge-${deviceId.slice(0, 4)}`),
    ...overrides,
  });
  const stop = registerCleanup(() => agent.close());
  return { agent, uplink, reader: reuse?.reader ?? database!.openReader(), dbUrl, stop };
}

/** A local application on the agent's listener, subscribed to local/#. */
async function localApp(agent: EdgeAgent): Promise<{ client: MqttClient; received: ReceivedMessage[] }> {
  const client = await connectClient(`mqtt://127.0.0.1:${agent.sensorPort}`, { clientId: `app-${randomUUID()}` });
  registerCleanup(() => client.endAsync(true));
  const received = collectMessages(client);
  await client.subscribeAsync('local/#', { qos: 1 });
  return { client, received };
}

const commandRow = (commandId: string) => storedCommand(db, commandId);
const commandStatus = async (commandId: string) => (await commandRow(commandId)).status;

async function edgeCommand(edge: Edge, commandId: string): Promise<Record<string, unknown> | undefined> {
  const result = await edge.reader.execute({ sql: 'SELECT * FROM command_queue WHERE id = ?', args: [commandId] });
  return result.rows[0] as unknown as Record<string, unknown> | undefined;
}

/** The retained message of a topic as a new subscriber gets it ('' when there is none). */
async function retained(topic: string): Promise<string> {
  const observer = await connectClient(broker.url, { clientId: 'explorer', ...certs.observers['explorer']! });
  try {
    const received = collectMessages(observer);
    await observer.subscribeAsync(topic, { qos: 1 });
    // a retained message is sent right after the SUBACK; a short grace for it on a loaded machine
    await new Promise((resolve) => setTimeout(resolve, 500));
    return received.find((message) => message.topic === topic)?.payload ?? '';
  } finally {
    await observer.endAsync(true);
  }
}

async function createCommand(deviceId: string, type: string, payload: Record<string, unknown> = {}): Promise<string> {
  const response = await operator.post('/api/v1/commands', { deviceId, type, payload });
  expect(response.status, response.text).toBe(201);
  return (response.body as { commandId: string }).commandId;
}

async function untilDone(edge: Edge, commandId: string, status: string): Promise<StoredCommand> {
  await expect.poll(() => commandStatus(commandId), poll).toBe(status);
  await expect.poll(async () => (await edgeCommand(edge, commandId))?.['report_confirmed'], poll).toBe(1);
  return commandRow(commandId);
}

const deliveriesOf = (app: { received: ReceivedMessage[] }, commandId: string) =>
  app.received.filter((message) => message.topic.startsWith('local/commands/') && message.payload.includes(commandId))
    .length;

async function connected(edge: Edge, yes = true): Promise<void> {
  await expect.poll(async () => (await edge.agent.stats()).connected, poll).toBe(yes);
}

async function answer(app: { client: MqttClient }, commandId: string, body: unknown): Promise<void> {
  await app.client.publishAsync(topics.localCommandResult(commandId), JSON.stringify(body), { qos: 1 });
}

async function createCommandWith(body: Record<string, unknown>): Promise<string> {
  const response = await operator.post('/api/v1/commands', body);
  expect(response.status, response.text).toBe(201);
  return (response.body as { commandId: string }).commandId;
}

async function configRow(deviceId: string, key: string) {
  return db.oneOrNone<{
    version: number;
    reported_version: number | null;
    reported_status: string | null;
    reported_error: string | null;
    deleted_at: Date | null;
  }>(
    `SELECT version::int AS version, reported_version::int AS reported_version, reported_status, reported_error, deleted_at
       FROM device_configs WHERE device_id = $1 AND config_key = $2`,
    [deviceId, key],
  );
}

async function edgeConfig(edge: Edge, key: string): Promise<{ config_value: string; version: number } | undefined> {
  const result = await edge.reader.execute({
    sql: 'SELECT config_value, version FROM device_config WHERE config_key = ?',
    args: [key],
  });
  return result.rows[0] as unknown as { config_value: string; version: number } | undefined;
}

/** A service-role client (the `admin` certificate) publishing what the API would refuse. */
async function serviceClient(): Promise<MqttClient> {
  const client = await connectClient(broker.url, { clientId: 'admin', ...certs.services['admin']! });
  registerCleanup(() => client.endAsync(true));
  return client;
}

describe('commands end to end', () => {
  it(
    'runs ping, sync-now and set-setting from the API to executed, with every timestamp, the result stored, the topic cleared and the edge report confirmed',
    async () => {
      const edge = await startEdge(DEVICE_A);
      await expect.poll(() => edge.agent.stats(), poll).toMatchObject({ connected: true });

      const ping = await createCommand(DEVICE_A, 'ping');
      const syncNow = await createCommand(DEVICE_A, 'sync-now');
      const setSetting = await createCommand(DEVICE_A, 'set-setting', { key: 'agent.batchMaxRecords', value: 7 });

      for (const [commandId, result] of [
        [ping, { pong: true, at: expect.any(String) as string }],
        [syncNow, { sent: expect.any(Number) as number }],
        [setSetting, { key: 'agent.batchMaxRecords', value: 7 }],
      ] as const) {
        const row = await untilDone(edge, commandId, 'executed');
        expect(row.result).toEqual(result);
        expect(row.error).toBeNull();
        for (const at of [row.delivered_at, row.started_at, row.finished_at, row.executed_at]) {
          expect(at).toBeInstanceOf(Date);
        }
        expect(row.delivered_at!.getTime()).toBeLessThanOrEqual(row.started_at!.getTime());
        expect(row.started_at!.getTime()).toBeLessThanOrEqual(row.finished_at!.getTime());
        expect(await edgeCommand(edge, commandId)).toMatchObject({ status: 'executed', report_status: 'executed' });
        expect(await retained(topics.command(DEVICE_A, commandId))).toBe('');
        const view = await operator.get(`/api/v1/commands/${commandId}`);
        expect(view.body).toMatchObject({ status: 'executed' });
      }
    },
    timeoutFor(poll.timeout * 7),
  );
});

describe('config end to end', () => {
  it(
    'applies the newest of v1, v2, v3 set through the API and records it applied; agent.syncIntervalMs is in force live',
    async () => {
      // no linger and a long interval: only the interval that arrives as config can send a reading
      const edge = await startEdge(DEVICE_B, { sendLingerMs: 3_600_000, syncIntervalMs: 3_600_000 });
      await expect.poll(() => edge.agent.stats(), poll).toMatchObject({ connected: true });
      const path = `/api/v1/devices/${DEVICE_B}/config/agent.syncIntervalMs`;
      for (const value of [3_600_000, 1_800_000, 200]) {
        const response = await operator.put(path, { value });
        expect(response.status, response.text).toBeLessThan(300);
      }
      await expect
        .poll(
          () =>
            db.one<{ version: number; reported_version: number | null; reported_status: string | null }>(
              `SELECT version::int AS version, reported_version::int AS reported_version, reported_status FROM device_configs WHERE device_id = $1 AND config_key = 'agent.syncIntervalMs'`,
              [DEVICE_B],
            ),
          poll,
        )
        .toEqual({ version: 3, reported_version: 3, reported_status: 'applied' });

      // live: a reading is sent within the new 200 ms interval, without any other trigger
      const sensor = await connectClient(`mqtt://127.0.0.1:${edge.agent.sensorPort}`, { clientId: 'sensor-b' });
      registerCleanup(() => sensor.endAsync(true));
      await sensor.publishAsync('sensors/s1/temperature', JSON.stringify({ value: 21 }), { qos: 1 });
      await expect
        .poll(
          async () =>
            Number(
              (await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data WHERE device_id = $1', [DEVICE_B]))
                .n,
            ),
          poll,
        )
        .toBe(1);
    },
    timeoutFor(poll.timeout * 3),
  );
});

describe('commands handled by local applications', () => {
  it(
    "runs a command through a local application's answer, and fails one whose application never answers after its timeout",
    async () => {
      const edge = await startEdge(DEVICE_A);
      const app = await localApp(edge.agent);
      await connected(edge);
      const answered = await createCommand(DEVICE_A, 'calibrate', { offset: 2 });
      const silent = await createCommand(DEVICE_A, 'silent.job', { timeoutMs: 1_000 });
      await expect.poll(() => deliveriesOf(app, answered), poll).toBe(1);
      await expect.poll(() => commandStatus(answered), poll).toBe('executing');
      await answer(app, answered, { status: 'executed', result: { calibrated: true } });

      const done = await untilDone(edge, answered, 'executed');
      expect(done.result).toEqual({ calibrated: true });
      const timedOut = await untilDone(edge, silent, 'failed');
      expect(timedOut.error).toMatch(/answer|time/i);
      expect(timedOut.started_at).toBeInstanceOf(Date);
      expect(deliveriesOf(app, silent)).toBe(1);
      expect(await retained(topics.command(DEVICE_A, silent))).toBe('');
    },
    timeoutFor(poll.timeout * 6),
  );
});

describe('a device that is offline', () => {
  it(
    'keeps a command pending while the uplink is cut and delivers and executes it after the restore',
    async () => {
      const edge = await startEdge(DEVICE_A);
      await connected(edge);
      edge.uplink.cut();
      await connected(edge, false);
      const commandId = await createCommand(DEVICE_A, 'ping');
      // the bridge published it (retained, pending); the device cannot have persisted it
      await expect.poll(() => retained(topics.command(DEVICE_A, commandId)), poll).toContain('"pending"');
      expect(await commandStatus(commandId)).toBe('pending');
      const restoredAt = Date.now();
      edge.uplink.restore();
      const row = await untilDone(edge, commandId, 'executed');
      // delivered is the edge's own persisted time: never before the uplink came back
      expect(row.delivered_at!.getTime()).toBeGreaterThanOrEqual(restoredAt);
    },
    timeoutFor(poll.timeout * 4),
  );

  it(
    'never runs a command that expired or was canceled while the device was offline',
    async () => {
      const edge = await startEdge(DEVICE_A);
      const app = await localApp(edge.agent);
      await connected(edge);
      edge.uplink.cut();
      await connected(edge, false);

      const expiring = await createCommandWith({
        deviceId: DEVICE_A,
        type: 'maintenance',
        payload: {},
        expiresAt: new Date(Date.now() + 2_000).toISOString(),
      });
      const canceled = await createCommand(DEVICE_A, 'maintenance');
      const cancel = await operator.post(`/api/v1/commands/${canceled}/cancel`);
      expect(cancel.status, cancel.text).toBe(200);
      expect(cancel.body).toMatchObject({ status: 'canceled' });
      await expect.poll(() => commandStatus(expiring), poll).toBe('expired');
      expect(await retained(topics.command(DEVICE_A, expiring))).toBe('');
      expect(await retained(topics.command(DEVICE_A, canceled))).toBe('');

      edge.uplink.restore();
      const later = await createCommand(DEVICE_A, 'ping');
      await untilDone(edge, later, 'executed');
      expect(await commandStatus(expiring)).toBe('expired');
      expect(await commandStatus(canceled)).toBe('canceled');
      expect({ expiring: deliveriesOf(app, expiring), canceled: deliveriesOf(app, canceled) }).toEqual({
        expiring: 0,
        canceled: 0,
      });
      for (const commandId of [expiring, canceled]) {
        expect((await edgeCommand(edge, commandId))?.['status'] ?? 'never seen').not.toMatch(/executing|executed/);
      }
    },
    timeoutFor(poll.timeout * 4),
  );

  it(
    'answers a cancel after execution started with 409 conflict, and the command still finishes',
    async () => {
      const edge = await startEdge(DEVICE_A);
      const app = await localApp(edge.agent);
      await connected(edge);
      const commandId = await createCommand(DEVICE_A, 'long.job');
      await expect.poll(() => commandStatus(commandId), poll).toBe('executing');
      const cancel = await operator.post(`/api/v1/commands/${commandId}/cancel`);
      expect(cancel.status, cancel.text).toBe(409);
      expect(errorOf(cancel).code).toBe('conflict');
      await answer(app, commandId, { status: 'executed', result: { ok: 1 } });
      expect((await untilDone(edge, commandId, 'executed')).result).toEqual({ ok: 1 });
    },
    timeoutFor(poll.timeout * 3),
  );
});

describe('exactly once', () => {
  it(
    'executes a command once across a bridge restart and a broker restart that lost its retained store, and never re-runs one interrupted by an edge restart',
    async () => {
      let edge = await startEdge(DEVICE_A);
      let app = await localApp(edge.agent);
      await connected(edge);
      const commandId = await createCommand(DEVICE_A, 'count.job');
      await expect.poll(() => commandStatus(commandId), poll).toBe('executing');
      expect(deliveriesOf(app, commandId)).toBe(1);

      await restartBridge();
      // the restarted bridge reconciles at start: the command is retained again (executing)
      await expect.poll(() => retained(topics.command(DEVICE_A, commandId)), poll).toContain('"executing"');
      await restartBrokerEmpty();
      await connected(edge);
      // the bridge lost its session with the broker: its reconciliation re-publishes the command
      await expect.poll(() => retained(topics.command(DEVICE_A, commandId)), poll).toContain('"executing"');
      // a later command through the same path: the re-published copy has reached the edge before it
      const ping = await createCommand(DEVICE_A, 'ping');
      await untilDone(edge, ping, 'executed');
      await answer(app, commandId, { status: 'executed', result: { runs: 1 } });
      await untilDone(edge, commandId, 'executed');
      expect(deliveriesOf(app, commandId)).toBe(1);

      // an edge restart while a command executes: reported failed, never handed out again
      const interrupted = await createCommand(DEVICE_A, 'count.job');
      await expect.poll(() => deliveriesOf(app, interrupted), poll).toBe(1);
      await expect.poll(() => commandStatus(interrupted), poll).toBe('executing');
      await edge.stop();
      edge = await startEdge(DEVICE_A, {}, edge);
      app = await localApp(edge.agent);
      const row = await untilDone(edge, interrupted, 'failed');
      expect(row.error).toBe(INTERRUPTED_REASON);
      const after = await createCommand(DEVICE_A, 'ping');
      await untilDone(edge, after, 'executed');
      expect(deliveriesOf(app, interrupted)).toBe(0);
    },
    timeoutFor(poll.timeout * 12),
  );
});

describe('a broker that lost its retained store', () => {
  it(
    "is healed by the bridge's reconciliation: every live command and config is retained again and the device converges",
    async () => {
      const edge = await startEdge(DEVICE_B);
      await connected(edge);
      edge.uplink.cut();
      await connected(edge, false);
      const commandId = await createCommand(DEVICE_B, 'ping');
      const put = await operator.put(`/api/v1/devices/${DEVICE_B}/config/agent.batchMaxRecords`, { value: 9 });
      expect(put.status, put.text).toBeLessThan(300);
      const version = (put.body as { version: number }).version;

      await restartBrokerEmpty();
      await expect.poll(() => retained(topics.command(DEVICE_B, commandId)), poll).toContain('"pending"');
      await expect
        .poll(() => retained(topics.config(DEVICE_B, 'agent.batchMaxRecords')), poll)
        .toContain(`"version":${version}`);

      edge.uplink.restore();
      await untilDone(edge, commandId, 'executed');
      await expect
        .poll(() => configRow(DEVICE_B, 'agent.batchMaxRecords'), poll)
        .toMatchObject({ version, reported_version: version, reported_status: 'applied' });
      expect(await edgeConfig(edge, 'agent.batchMaxRecords')).toMatchObject({ version });
    },
    timeoutFor(poll.timeout * 6),
  );
});

describe('config: refusals, order and delete', () => {
  it(
    'refuses an invalid agent.logLevel at the API (422); published anyway, the edge rejects it with the reason and keeps the old value',
    async () => {
      const edge = await startEdge(DEVICE_B);
      await connected(edge);
      const path = `/api/v1/devices/${DEVICE_B}/config/agent.logLevel`;
      const refused = await operator.put(path, { value: 'loud' });
      // docs/operations.md: a value the agent's schema refuses is 422 invalid-config
      expect(refused.status, refused.text).toBe(422);
      expect(errorOf(refused).code).toBe('invalid-config');
      expect(errorOf(refused).message).toContain('agent.logLevel');

      const set = await operator.put(path, { value: 'debug' });
      expect(set.status, set.text).toBeLessThan(300);
      const version = (set.body as { version: number }).version;
      await expect
        .poll(() => configRow(DEVICE_B, 'agent.logLevel'), poll)
        .toMatchObject({ reported_version: version, reported_status: 'applied' });

      const service = await serviceClient();
      const reports = collectMessages(service);
      await service.subscribeAsync(topics.configReported(DEVICE_B), { qos: 1 });
      await service.publishAsync(
        topics.config(DEVICE_B, 'agent.logLevel'),
        JSON.stringify({ key: 'agent.logLevel', value: 'loud', version: version + 1 }),
        { qos: 1, retain: true },
      );
      await expect
        .poll(() => reports.map((message) => JSON.parse(message.payload) as Record<string, unknown>), poll)
        .toContainEqual(
          expect.objectContaining({
            key: 'agent.logLevel',
            version: version + 1,
            status: 'rejected',
            error: expect.stringContaining('allowed values') as string,
          }),
        );
      expect(await edgeConfig(edge, 'agent.logLevel')).toMatchObject({ config_value: '"debug"' });
      expect(await configRow(DEVICE_B, 'agent.logLevel')).toMatchObject({ version, reported_version: version });
      // valid writes after it still apply. The forged message took version + 1, which the control plane
      // hands out next: the edge has already answered that version (rejected), so only the write after
      // it is newer for the edge (a version is the control plane's to assign; see the report)
      let latest = version;
      for (const value of ['info', 'warn']) {
        const next = await operator.put(path, { value });
        expect(next.status, next.text).toBeLessThan(300);
        latest = (next.body as { version: number }).version;
      }
      await expect
        .poll(() => configRow(DEVICE_B, 'agent.logLevel'), poll)
        .toMatchObject({ version: latest, reported_version: latest, reported_status: 'applied' });
      expect(await edgeConfig(edge, 'agent.logLevel')).toMatchObject({ config_value: '"warn"', version: latest });
    },
    timeoutFor(poll.timeout * 5),
  );

  it(
    'never downgrades: an older version published after a newer one changes nothing; a delete clears the topic and the edge forgets the key',
    async () => {
      const edge = await startEdge(DEVICE_B);
      await connected(edge);
      const key = 'app.mode';
      const path = `/api/v1/devices/${DEVICE_B}/config/${key}`;
      let version = 0;
      for (const value of ['one', 'two', 'three']) {
        const response = await operator.put(path, { value });
        expect(response.status, response.text).toBeLessThan(300);
        version = (response.body as { version: number }).version;
      }
      await expect
        .poll(() => configRow(DEVICE_B, key), poll)
        .toMatchObject({ version, reported_version: version, reported_status: 'applied' });

      const service = await serviceClient();
      await service.publishAsync(
        topics.config(DEVICE_B, key),
        JSON.stringify({ key, value: 'stale', version: version - 1 }),
        { qos: 1, retain: true },
      );
      // a later write goes through after the stale one: by then the edge has handled (ignored) it
      const marker = await operator.put(`/api/v1/devices/${DEVICE_B}/config/app.marker`, { value: 1 });
      const markerVersion = (marker.body as { version: number }).version;
      await expect
        .poll(() => configRow(DEVICE_B, 'app.marker'), poll)
        .toMatchObject({ reported_version: markerVersion, reported_status: 'applied' });
      expect(await edgeConfig(edge, key)).toMatchObject({ config_value: '"three"', version });
      expect(await configRow(DEVICE_B, key)).toMatchObject({ version, reported_version: version });

      const deleted = await operator.delete(path);
      expect(deleted.status, deleted.text).toBeLessThan(300);
      await expect.poll(() => retained(topics.config(DEVICE_B, key)), poll).toBe('');
      await expect.poll(() => edgeConfig(edge, key), poll).toBeUndefined();
    },
    timeoutFor(poll.timeout * 5),
  );
});

describe('the HTTP fallback', () => {
  it('ingests a batch like MQTT: the same rows and the same ack body; posting it again adds no row', async () => {
    const records = () => [
      makeRecord({ sensorId: 'pump-1', value: 4.5, atMs: Date.UTC(2026, 0, 1, 0, 0, 1), metadata: { a: 1 } }),
      makeRecord({ sensorId: 'pump-2', value: -1, unit: null, atMs: Date.UTC(2026, 0, 1, 0, 0, 2) }),
      { id: 'bad-reading', sensorId: 'pump-3', value: 'hot' },
    ];
    const mqttBatch = makeBatch(records(), { pendingCount: 3 });
    const httpBatch = makeBatch(records(), { pendingCount: 3 });
    const mqttDevice = await connectTelemetryDevice(broker.url, DEVICE_MQTT, certs.devices[DEVICE_MQTT]);
    registerCleanup(() => mqttDevice.client.endAsync(true));
    await mqttDevice.send(mqttBatch);
    await expect.poll(() => mqttDevice.ackFor(mqttBatch.batchId), poll).toBeDefined();
    const device = apiClient(api, certs.devices[DEVICE_HTTP]!);
    const response = await device.post('/api/v1/sync/telemetry', httpBatch);
    expect(response.status, response.text).toBe(200);
    const withoutBatch = (ack: SyncAck) => ({ ...ack, batchId: null });
    expect(withoutBatch(response.body as SyncAck)).toEqual(withoutBatch(mqttDevice.ackFor(mqttBatch.batchId)!));
    expect(response.body).toMatchObject({ batchId: httpBatch.batchId, accepted: 2 });

    const rows = (deviceId: string) =>
      db.any<Record<string, unknown>>(
        `SELECT sensor_id, data_type, "timestamp", value, unit, metadata, version, content_hash
           FROM telemetry_data WHERE device_id = $1 ORDER BY "timestamp", sensor_id`,
        [deviceId],
      );
    const httpRows = await rows(DEVICE_HTTP);
    expect(httpRows).toHaveLength(2);
    expect(httpRows).toEqual(await rows(DEVICE_MQTT));

    const again = await device.post('/api/v1/sync/telemetry', httpBatch);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(response.body);
    expect(await rows(DEVICE_HTTP)).toHaveLength(2);
  });
});

describe("another device's commands", () => {
  it(
    'are out of reach of a device certificate: SUBACK 128, a closed connection for a foreign result, 403/404 over HTTP',
    async () => {
      const foreign = await createCommand(DEVICE_B, 'maintenance');
      const intruder = await connectClient(broker.url, {
        clientId: DEVICE_A,
        clean: true,
        ...certs.devices[DEVICE_A]!,
      });
      registerCleanup(() => intruder.endAsync(true));
      expect(await subscribeGranted(intruder, [topics.commandMessagesFilter(DEVICE_B)])).toEqual([128]);
      const gone = closed(intruder, 15_000);
      intruder.publish(
        `devices/${DEVICE_B}/commands/${foreign}/result`,
        JSON.stringify({ status: 'executed', at: new Date().toISOString() }),
        { qos: 1 },
      );
      await gone;
      expect(await commandStatus(foreign)).toBe('pending');

      const http = apiClient(api, certs.devices[DEVICE_A]!);
      expect((await http.get(`/api/v1/sync/commands/${DEVICE_B}`)).status).toBe(403);
      expect((await http.get(`/api/v1/sync/status/${DEVICE_B}`)).status).toBe(403);
      const ack = await http.post(`/api/v1/sync/ack/${foreign}`, { status: 'executed', at: new Date().toISOString() });
      expect(ack.status, ack.text).toBe(404);
      // an owned resource of another device is not found (ids do not leak)
      expect((await http.get(`/api/v1/commands/${foreign}`)).status).toBe(404);
      expect(await commandStatus(foreign)).toBe('pending');
      // its own device still gets it
      const owner = await startEdge(DEVICE_B);
      const app = await localApp(owner.agent);
      await expect.poll(() => deliveriesOf(app, foreign), poll).toBe(1);
      await answer(app, foreign, { status: 'executed' });
      await untilDone(owner, foreign, 'executed');
    },
    timeoutFor(poll.timeout * 4),
  );
});

describe('bad input', () => {
  it(
    'refuses every bad input with a clear error, end to end, and each is followed by a valid command that completes',
    async () => {
      const rejectedReports = async (): Promise<number> =>
        (await bridge.metrics.downstreamReportsRejected.get()).values.reduce((sum, value) => sum + value.value, 0);
      const validCommandCompletes = async (edge: Edge): Promise<void> => {
        const ping = await createCommand(DEVICE_A, 'ping');
        await untilDone(edge, ping, 'executed');
      };

      // at the API: a bad type, a payload that does not match its type, an oversize payload, a stale
      // expected version, bodies that are not JSON
      const badType = await operator.post('/api/v1/commands', { deviceId: DEVICE_A, type: 'Not A Type', payload: {} });
      // the type's pattern is in the route's JSON Schema: 400 invalid-request naming the field
      expect([badType.status, errorOf(badType).code], badType.text).toEqual([400, 'invalid-request']);
      expect(errorOf(badType).message).toContain('type');
      const badPayload = await operator.post('/api/v1/commands', {
        deviceId: DEVICE_A,
        type: 'set-setting',
        payload: { key: 'agent.syncIntervalMs', value: 5 },
      });
      expect(badPayload.status, badPayload.text).toBe(422);
      expect(errorOf(badPayload).message).toContain('agent.syncIntervalMs');
      const oversize = await operator.post('/api/v1/commands', {
        deviceId: DEVICE_A,
        type: 'upload',
        payload: { blob: 'x'.repeat(70_000) },
      });
      expect(oversize.status, oversize.text).toBe(422);
      expect(errorOf(oversize).message).toMatch(/bytes/);
      const path = `/api/v1/devices/${DEVICE_A}/config/app.limit`;
      const first = await operator.put(path, { value: 1 });
      expect(first.status, first.text).toBeLessThan(300);
      const stale = await operator.put(path, { value: 2, expectedVersion: 0 });
      expect([stale.status, errorOf(stale).code]).toEqual([409, 'conflict']);
      const notJson = await operator.post('/api/v1/commands', '{"deviceId": ');
      expect([notJson.status, errorOf(notJson).code]).toEqual([400, 'invalid-json']);
      const device = apiClient(api, certs.devices[DEVICE_A]!);
      const notJsonTelemetry = await device.post('/api/v1/sync/telemetry', '{"batchId": ');
      expect([notJsonTelemetry.status, errorOf(notJsonTelemetry).code]).toEqual([400, 'invalid-json']);
      const notJsonAck = await device.post(`/api/v1/sync/ack/${randomUUID()}`, 'not json');
      expect([notJsonAck.status, errorOf(notJsonAck).code]).toEqual([400, 'invalid-json']);

      // over MQTT, from the device itself: a result for a command that does not exist, for another
      // device's command, an invalid one and an oversize one; the bridge refuses each and answers with a clear
      const foreign = await createCommand(DEVICE_B, 'maintenance');
      const own = await createCommand(DEVICE_A, 'maintenance');
      const rejectedBefore = await rejectedReports();
      const raw = await connectClient(broker.url, { clientId: DEVICE_A, clean: true, ...certs.devices[DEVICE_A]! });
      const seen = collectMessages(raw);
      await raw.subscribeAsync(topics.commandMessagesFilter(DEVICE_A), { qos: 1 });
      const at = new Date().toISOString();
      const unknown = randomUUID();
      await raw.publishAsync(
        `devices/${DEVICE_A}/commands/${unknown}/result`,
        JSON.stringify({ status: 'executed', at }),
        {
          qos: 1,
        },
      );
      await raw.publishAsync(
        `devices/${DEVICE_A}/commands/${foreign}/result`,
        JSON.stringify({ status: 'executed', at }),
        {
          qos: 1,
        },
      );
      await raw.publishAsync(`devices/${DEVICE_A}/commands/${own}/result`, '{"status":"done"}', { qos: 1 });
      await raw.publishAsync(
        `devices/${DEVICE_A}/commands/${own}/result`,
        JSON.stringify({ status: 'executed', at, result: { blob: 'x'.repeat(70_000) } }),
        { qos: 1 },
      );
      await expect.poll(rejectedReports, poll).toBeGreaterThanOrEqual(rejectedBefore + 4);
      await expect
        .poll(() => seen.some((m) => m.topic === topics.command(DEVICE_A, unknown) && m.payload === ''), poll)
        .toBe(true);
      expect(await commandStatus(foreign)).toBe('pending');
      expect(await commandStatus(own)).toBe('pending');
      await raw.endAsync();

      // published by a service client past the API: an unknown-to-the-schema payload is rejected by the edge
      const edge = await startEdge(DEVICE_A);
      const app = await localApp(edge.agent);
      await connected(edge);
      await expect.poll(() => deliveriesOf(app, own), poll).toBe(1);
      await answer(app, own, { status: 'executed' });
      await untilDone(edge, own, 'executed');
      const service = await serviceClient();
      const forged = randomUUID();
      await service.publishAsync(
        topics.command(DEVICE_A, forged),
        JSON.stringify({
          commandId: forged,
          type: 'set-setting',
          payload: { key: 'agent.logLevel', value: 'loud' },
          createdAt: new Date().toISOString(),
          status: 'pending',
        }),
        { qos: 1, retain: true },
      );
      await expect.poll(async () => (await edgeCommand(edge, forged))?.['status'], poll).toBe('rejected');
      expect(String((await edgeCommand(edge, forged))?.['error'])).toContain('agent.logLevel');
      // it exists in no database: the bridge refuses the edge's report and clears the topic
      await expect.poll(() => retained(topics.command(DEVICE_A, forged)), poll).toBe('');
      await validCommandCompletes(edge);
    },
    timeoutFor(poll.timeout * 10),
  );
});
