/**
 * Cluster mode with real TLS: two broker nodes in this process sharing one throwaway Redis
 * (mqemitter-redis + aedes-persistence-redis), plus one node run as its own process through
 * broker/main.ts and killed with SIGKILL to see a crashed node's will fire.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedisBackends, type RedisBackendsOptions } from '../../broker/cluster-backends.js';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates, type TlsFiles } from '../helpers/certs.js';
import { freePort } from '../../devtools/free-port.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { collectMessages, subscribeGranted, waitUntil, type ReceivedMessage } from '../helpers/mqtt-observe.js';

const DEVICE_A = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const DEVICE_B = '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c';
const WAIT_MS = 5_000;
const HEARTBEAT_MS = 1_000;

type LogLine = { msg: string; node?: string; [field: string]: unknown };

let certs: TestCertificates;
let redis: TestRedis;
let nodeA: RunningBroker;
let nodeB: RunningBroker;
const logLines: LogLine[] = [];
const openClients = new Set<MqttClient>();
const closedOnce = new WeakMap<MqttClient, Promise<void>>();
const logSink = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as LogLine);
    callback();
  },
});
const baseLogger = pino({ level: 'debug' }, logSink);

interface NodeOptions {
  metricsPort?: number;
  backends?: RedisBackendsOptions;
}

async function startNode(
  node: string,
  redisUrl: string,
  { metricsPort, backends }: NodeOptions = {},
): Promise<RunningBroker> {
  const logger = baseLogger.child({ node });
  return startBroker({
    tls: certs.broker,
    host: '127.0.0.1',
    port: 0,
    brokerId: node,
    heartbeatIntervalMs: HEARTBEAT_MS,
    logger,
    backends: await createRedisBackends(redisUrl, logger, backends),
    ...(metricsPort === undefined ? {} : { metricsPort }),
  });
}

beforeAll(async () => {
  [certs, redis] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE_A, DEVICE_B], serviceNames: ['bridge'], observerNames: ['explorer'] }),
    startTestRedis(),
  ]);
  [nodeA, nodeB] = await Promise.all([startNode('node-a', redis.url), startNode('node-b', redis.url)]);
});

afterEach(async () => {
  await Promise.all([...openClients].map((client) => client.endAsync(true)));
  openClients.clear();
});

afterAll(async () => {
  await Promise.all([nodeA?.close(), nodeB?.close()]);
  await redis?.stop();
  await certs?.cleanup();
});

// ---------------------------------------------------------------------------------------------
// helpers

function open(broker: { port: number }, material: TlsFiles, clientId: string, extra: IClientOptions = {}): MqttClient {
  const client = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, {
    ...material,
    clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    ...extra,
  });
  openClients.add(client);
  closedOnce.set(client, new Promise((resolve) => client.once('close', () => resolve())));
  return client;
}

function connected(client: MqttClient): Promise<{ sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ sessionPresent: connack.sessionPresent }));
    client.once('close', () => reject(new Error(`${client.options.clientId} could not connect`)));
  });
}

async function connect(
  broker: { port: number },
  material: TlsFiles,
  clientId: string,
  extra?: IClientOptions,
): Promise<MqttClient> {
  const client = open(broker, material, clientId, extra);
  await connected(client);
  return client;
}

const device = (broker: RunningBroker, id: string, extra?: IClientOptions) =>
  connect(broker, certs.devices[id]!, id, extra);
const bridge = (broker: RunningBroker) => connect(broker, certs.services.bridge!, 'bridge');
const observer = (broker: RunningBroker) => connect(broker, certs.observers.explorer!, 'explorer');

/** Resolves when the connection has closed, also when that happened before the call. */
async function waitForClose(client: MqttClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the broker did not close ${client.options.clientId}`)), WAIT_MS);
  });
  try {
    await Promise.race([closedOnce.get(client), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const hasPayload = (received: ReceivedMessage[], payload: string) => () =>
  received.some((message) => message.payload === payload);

/** Publishes a marker and waits until `received` has it: whatever was published before it on that path arrived first. */
async function barrier(publisher: MqttClient, received: ReceivedMessage[], topic: string): Promise<void> {
  const marker = JSON.stringify({ marker: Math.random() });
  await publisher.publishAsync(topic, marker, { qos: 1 });
  await waitUntil(hasPayload(received, marker), `marker on ${topic}`);
}

function logged(msg: string, fields: Record<string, unknown>): LogLine[] {
  return logLines.filter(
    (line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value),
  );
}

// ---------------------------------------------------------------------------------------------

describe('routing across nodes', () => {
  it('telemetry a device publishes on node A reaches the bridge on node B, once', async () => {
    const service = await bridge(nodeB);
    expect(await subscribeGranted(service, ['devices/+/telemetry'])).toEqual([1]);
    const received = collectMessages(service);
    const deviceA = await device(nodeA, DEVICE_A);

    const payload = JSON.stringify({ batchId: 'cluster-1', records: [] });
    await deviceA.publishAsync(topics.telemetry(DEVICE_A), payload, { qos: 1 });
    await waitUntil(hasPayload(received, payload), 'the telemetry at the bridge on node B');

    await barrier(deviceA, received, topics.telemetry(DEVICE_A));
    expect(received.filter((message) => message.payload === payload)).toHaveLength(1);
  });

  it('a retained config published via node B is delivered as retained to a device connecting later to node A', async () => {
    const service = await bridge(nodeB);
    await subscribeGranted(service, [topics.configFilter(DEVICE_A)]);
    const atService = collectMessages(service);
    const config = JSON.stringify({ key: 'x', value: 42, version: 7 });
    await service.publishAsync(topics.config(DEVICE_A, 'x'), config, { qos: 1, retain: true });
    // aedes stores a retained message before it routes it: seeing it routed means it is in Redis
    await waitUntil(hasPayload(atService, config), 'the config routed back to the bridge');

    const deviceA = await device(nodeA, DEVICE_A);
    const atDevice = collectMessages(deviceA);
    expect(await subscribeGranted(deviceA, [topics.configFilter(DEVICE_A)])).toEqual([1]);
    await waitUntil(hasPayload(atDevice, config), 'the retained config at the device on node A');
    expect(atDevice).toEqual([{ topic: topics.config(DEVICE_A, 'x'), payload: config, retain: true, qos: 1 }]);

    await service.publishAsync(topics.config(DEVICE_A, 'x'), '', { qos: 1, retain: true }); // clear it
  });

  it('a device will published by node A on an abrupt drop reaches the bridge on node B', async () => {
    const service = await bridge(nodeB);
    await subscribeGranted(service, [topics.status(DEVICE_A)]);
    const received = collectMessages(service);
    const will = JSON.stringify({ online: false, at: '2026-01-01T00:00:00.000Z' });
    const deviceA = await device(nodeA, DEVICE_A, {
      will: { topic: topics.status(DEVICE_A), payload: Buffer.from(will), qos: 1, retain: false },
    });

    deviceA.stream.destroy();
    await waitUntil(hasPayload(received, will), 'the will at the bridge on node B');
  });
});

describe('sessions across nodes', () => {
  it('a clean:false device that left node A gets the acks queued while offline when it reconnects to node B', async () => {
    const service = await bridge(nodeB);
    const watcher = await observer(nodeA);
    await subscribeGranted(watcher, ['devices/+/sync/ack']);
    const watched = collectMessages(watcher);

    const first = await device(nodeA, DEVICE_A, { clean: false });
    expect(await subscribeGranted(first, [topics.syncAck(DEVICE_A), topics.syncAck(DEVICE_B)])).toEqual([1, 128]);
    // only the granted filter is stored in Redis (broker/session-subscriptions.ts)
    const persistence = (
      nodeB.aedes as unknown as { persistence: { subscriptionsByClient(c: object): Promise<object[]> } }
    ).persistence;
    expect(await persistence.subscriptionsByClient({ id: DEVICE_A })).toEqual([
      expect.objectContaining({ topic: topics.syncAck(DEVICE_A), qos: 1 }),
    ]);
    await first.endAsync();

    const leaked = JSON.stringify({ batchId: 'for-b', accepted: 1 });
    const ownAck = JSON.stringify({ batchId: 'for-a', accepted: 1 });
    await service.publishAsync(topics.syncAck(DEVICE_B), leaked, { qos: 1 });
    await service.publishAsync(topics.syncAck(DEVICE_A), ownAck, { qos: 1 });
    // aedes queues for offline sessions before it routes: seen by the observer means queued
    await waitUntil(() => hasPayload(watched, leaked)() && hasPayload(watched, ownAck)(), 'both acks at the observer');

    const again = open(nodeB, certs.devices[DEVICE_A]!, DEVICE_A, { clean: false });
    const received = collectMessages(again);
    expect((await connected(again)).sessionPresent).toBe(true);
    await waitUntil(hasPayload(received, ownAck), 'the queued ack at the device on node B');

    await barrier(service, received, topics.syncAck(DEVICE_A));
    expect(received.filter((message) => message.topic === topics.syncAck(DEVICE_B))).toEqual([]);
    // nothing was queued for the refused filter, so nothing had to be withheld
    expect(logged('delivery withheld', { clientId: DEVICE_A, topic: topics.syncAck(DEVICE_B) })).toEqual([]);

    await again.endAsync();
    await (await device(nodeA, DEVICE_A, { clean: true })).endAsync(); // end the persistent session
  });

  it('connecting to node B takes over the clientId: node A closes the older connection', async () => {
    const onA = await device(nodeA, DEVICE_A);
    const onB = await device(nodeB, DEVICE_A);
    await waitForClose(onA);
    expect(onB.connected).toBe(true);
  });
});

describe('ACL in cluster mode', () => {
  it("a device on node A cannot read device B's acks published via node B", async () => {
    const service = await bridge(nodeB);
    const deviceA = await device(nodeA, DEVICE_A);
    const received = collectMessages(deviceA);
    const denied = () =>
      logged('subscription denied', { node: 'node-a', clientId: DEVICE_A, topicFilter: topics.syncAck(DEVICE_B) });
    const deniedBefore = denied().length;

    const filters = [topics.syncAck(DEVICE_B), topics.syncAck(DEVICE_A), 'devices/+/sync/ack'];
    expect(await subscribeGranted(deviceA, filters)).toEqual([128, 1, 128]);
    await service.publishAsync(topics.syncAck(DEVICE_B), JSON.stringify({ leaked: true }), { qos: 1 });
    await barrier(service, received, topics.syncAck(DEVICE_A));

    expect(received.filter((message) => message.topic === topics.syncAck(DEVICE_B))).toEqual([]);
    expect(denied()).toHaveLength(deniedBefore + 1);
  });

  it('a device on node A cannot publish as device B: disconnected, nothing reaches node B', async () => {
    const service = await bridge(nodeB);
    await subscribeGranted(service, ['devices/+/telemetry']);
    const received = collectMessages(service);
    const deviceA = await device(nodeA, DEVICE_A);

    deviceA.publish(topics.telemetry(DEVICE_B), JSON.stringify({ forged: true }), { qos: 1 });
    await waitForClose(deviceA);

    const deviceB = await device(nodeB, DEVICE_B);
    await barrier(deviceB, received, topics.telemetry(DEVICE_B));
    expect(received.filter((message) => message.payload.includes('forged'))).toEqual([]);
  });
});

describe('a crashed node (broker/main.ts in cluster mode, SIGKILL)', () => {
  it("its devices' wills are published by the surviving nodes a few heartbeats later", async () => {
    const port = await freePort();
    const child = spawnBrokerProcess(port);
    try {
      const started = await waitForLog(child, 'broker listening (MQTT over mutual TLS)', 15_000);
      expect(started.brokerId).toMatch(/^crashy-[0-9a-f]{8}$/);

      const service = await bridge(nodeB);
      await subscribeGranted(service, [topics.status(DEVICE_B)]);
      const received = collectMessages(service);
      const will = JSON.stringify({ online: false, at: '2026-01-01T00:00:00.000Z' });
      await connect({ port }, certs.devices[DEVICE_B]!, DEVICE_B, {
        will: { topic: topics.status(DEVICE_B), payload: Buffer.from(will), qos: 1, retain: false },
      });

      const killedAt = Date.now();
      child.kill('SIGKILL');
      // dead after 3 missed heartbeats, wills checked every 4: ~3-7 heartbeats here
      await waitUntil(hasPayload(received, will), 'the will of the crashed node', 10 * HEARTBEAT_MS);
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(2 * HEARTBEAT_MS);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('backend lifecycle', () => {
  it('fails fast with a clear error when the Redis password is wrong, without leaking it', async () => {
    const secured = await startTestRedis({ password: 'right-password' });
    try {
      const started = Date.now();
      const attempt = createRedisBackends(secured.url.replace('right-password', 'wrong-password'), baseLogger);
      await expect(attempt).rejects.toThrow(
        /^Redis at redis:\/\/\*\*\*@127\.0\.0\.1:\d+\/0 refused the connection: WRONGPASS/,
      );
      await expect(attempt).rejects.not.toThrow(/password@|wrong-password/);
      expect(Date.now() - started).toBeLessThan(WAIT_MS);
    } finally {
      await secured.stop();
    }
  });

  it('/healthz turns 503 while Redis is down, and close() still finishes', async () => {
    const ownRedis = await startTestRedis();
    const closeTimeoutMs = 300;
    const node = await startNode('node-c', ownRedis.url, { metricsPort: 0, backends: { closeTimeoutMs } });
    const health = async () => (await fetch(`http://127.0.0.1:${node.metricsPort}/healthz`)).status;
    try {
      expect(await health()).toBe(200);
      await ownRedis.stop();
      const deadline = Date.now() + WAIT_MS;
      while ((await health()) !== 503) {
        if (Date.now() > deadline) throw new Error('/healthz stayed 200 with Redis down');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const closeStarted = Date.now();
      await node.close();
      // the bus' QUIT and the persistence's unsubscribe each wait closeTimeoutMs, then give up
      expect(Date.now() - closeStarted).toBeLessThan(4 * closeTimeoutMs + 1_000);
      expect(logged('cluster backends closed', { node: 'node-c' })).toHaveLength(1);
    } finally {
      await node.close();
      await ownRedis.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// the broker as its own process

function spawnBrokerProcess(port: number): ChildProcess {
  const { broker, ca } = certs.bundle;
  return spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      BROKER_HOST: '127.0.0.1',
      BROKER_PORT: String(port),
      BROKER_TLS_CERT: broker.certPath,
      BROKER_TLS_KEY: broker.keyPath,
      BROKER_TLS_CA: ca.certPath,
      BROKER_REDIS_URL: redis.url,
      BROKER_ID: 'crashy',
      BROKER_HEARTBEAT_MS: String(HEARTBEAT_MS),
      LOG_LEVEL: 'info',
    },
  });
}

function waitForLog(child: ChildProcess, msg: string, timeoutMs: number): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    let output = '';
    let pending = '';
    const timer = setTimeout(
      () => reject(new Error(`no '${msg}' from the broker process within ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const lines = (pending + chunk.toString()).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const parsed = line.startsWith('{') ? (JSON.parse(line) as LogLine) : undefined;
        if (parsed?.msg === msg) {
          clearTimeout(timer);
          resolve(parsed);
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`the broker process exited (${code}):\n${output}`)));
  });
}
