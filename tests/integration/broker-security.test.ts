/**
 * The broker's security with real TLS, a real Aedes and real mqtt.js clients: identity from the
 * client certificate, topic permissions by role, QoS and size limits.
 */
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import { topics } from '../../schemas/topics.js';
import {
  createRogueClientCertificate,
  createTestCertificates,
  type TestCertificates,
  type TlsFiles,
} from '../helpers/certs.js';
import { collectMessages, subscribeGranted, waitUntil, type ReceivedMessage } from '../helpers/mqtt-observe.js';

const DEVICE_A = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const DEVICE_B = '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c';
const WAIT_MS = 5_000;

type LogLine = { msg: string; [field: string]: unknown };

let certs: TestCertificates;
let rogue: TlsFiles;
let broker: RunningBroker;
const logLines: LogLine[] = [];
const openClients = new Set<MqttClient>();

beforeAll(async () => {
  [certs, rogue] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE_A, DEVICE_B], serviceNames: ['bridge'], observerNames: ['explorer'] }),
    createRogueClientCertificate({ commonName: DEVICE_A, role: 'device' }),
  ]);
  const captured = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  broker = await startBroker({
    tls: certs.broker,
    host: '127.0.0.1',
    port: 0,
    metricsPort: 0,
    logger: pino({ level: 'debug' }, captured),
  });
});

afterEach(async () => {
  await Promise.all([...openClients].map((client) => client.endAsync(true)));
  openClients.clear();
});

afterAll(async () => {
  await broker?.close();
  await certs?.cleanup();
});

// ---------------------------------------------------------------------------------------------
// helpers

type Outcome =
  | { connected: true; client: MqttClient }
  | { connected: false; client: MqttClient; error: Error | undefined };

/** Connects once (no reconnects) and reports whether a session was established. */
function attemptConnection(
  material: Partial<TlsFiles>,
  clientId: string,
  extra: IClientOptions = {},
): Promise<Outcome> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, {
    ...material,
    clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    ...extra,
  });
  openClients.add(client);
  return new Promise((resolve) => {
    let lastError: Error | undefined;
    client.on('error', (error) => {
      lastError = error;
    });
    client.once('connect', () => resolve({ connected: true, client }));
    client.once('close', () => resolve({ connected: false, client, error: lastError }));
  });
}

async function connect(material: Partial<TlsFiles>, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const outcome = await attemptConnection(material, clientId, extra);
  if (!outcome.connected) throw new Error(`${clientId} could not connect: ${outcome.error?.message ?? 'closed'}`);
  return outcome.client;
}

const device = (id: string, extra?: IClientOptions) => connect(certs.devices[id]!, id, extra);
const bridge = () => connect(certs.services.bridge!, 'bridge');

function waitForClose(client: MqttClient): Promise<void> {
  if (!client.connected && client.disconnected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the broker did not close the connection')), WAIT_MS);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function logged(msg: string, fields: Record<string, unknown> = {}): LogLine[] {
  return logLines.filter(
    (line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value),
  );
}

/**
 * Publishes a marker as the bridge on a device's topic and waits for `received` to contain it:
 * anything sent earlier on that path would have arrived before it.
 */
async function barrier(publisher: MqttClient, received: ReceivedMessage[], topic: string): Promise<void> {
  const marker = JSON.stringify({ marker: Math.random() });
  await publisher.publishAsync(topic, marker, { qos: 1 });
  await waitUntil(() => received.some((message) => message.payload === marker), `marker on ${topic}`);
}

// ---------------------------------------------------------------------------------------------

describe('publishing', () => {
  it('a device publishes its telemetry and the bridge receives it', async () => {
    const service = await bridge();
    expect(await subscribeGranted(service, ['devices/+/telemetry'])).toEqual([1]);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    const payload = JSON.stringify({ batchId: 'b1', records: [] });
    await deviceA.publishAsync(topics.telemetry(DEVICE_A), payload, { qos: 1 });

    await waitUntil(() => received.length === 1, 'the telemetry at the bridge');
    expect(received).toEqual([{ topic: topics.telemetry(DEVICE_A), payload, retain: false, qos: 1 }]);
  });

  it('a device cannot publish as another device: disconnected, nothing delivered', async () => {
    const service = await bridge();
    await subscribeGranted(service, ['devices/+/telemetry']);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    deviceA.publish(topics.telemetry(DEVICE_B), JSON.stringify({ forged: true }), { qos: 1 });
    await waitForClose(deviceA);

    const deviceB = await device(DEVICE_B);
    await barrier(deviceB, received, topics.telemetry(DEVICE_B));
    expect(received.filter((message) => message.payload.includes('forged'))).toEqual([]);
    expect(
      logged('publish denied, closing the connection', { clientId: DEVICE_A, topic: topics.telemetry(DEVICE_B) }),
    ).toHaveLength(1);
    expect(logged('publish denied, closing the connection', { clientId: DEVICE_A }).at(-1)?.reason).toContain(
      `may not publish for device '${DEVICE_B}'`,
    );
  });

  it('a QoS 0 publish under devices/ is refused', async () => {
    const service = await bridge();
    await subscribeGranted(service, ['devices/+/telemetry']);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    deviceA.publish(topics.telemetry(DEVICE_A), JSON.stringify({ qos0: true }), { qos: 0 });
    await waitForClose(deviceA);

    await barrier(service, received, topics.telemetry(DEVICE_A));
    expect(received.filter((message) => message.payload.includes('qos0'))).toEqual([]);
    expect(logged('publish denied, closing the connection', { clientId: DEVICE_A, qos: 0 }).at(-1)?.reason).toMatch(
      /published with QoS 0.*must use QoS 1/,
    );
  });

  it('a payload over MAX_PAYLOAD_BYTES is refused and not delivered', async () => {
    const service = await bridge();
    await subscribeGranted(service, ['devices/+/telemetry']);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    deviceA.publish(topics.telemetry(DEVICE_A), Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20), { qos: 1 });
    await waitForClose(deviceA);

    await barrier(service, received, topics.telemetry(DEVICE_A));
    expect(received.filter((message) => message.payload.length > MAX_PAYLOAD_BYTES)).toEqual([]);
    expect(logged('publish denied, closing the connection', { clientId: DEVICE_A }).at(-1)?.reason).toBe(
      `payload of ${MAX_PAYLOAD_BYTES + 1} bytes on '${topics.telemetry(DEVICE_A)}' exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`,
    );
  });

  it('a packet far over the limit is refused from its header, before it is buffered', async () => {
    const deviceA = await device(DEVICE_A);
    const deniedBefore = logged('publish denied, closing the connection', { clientId: DEVICE_A }).length;

    deviceA.publish(topics.telemetry(DEVICE_A), Buffer.alloc(MAX_PAYLOAD_BYTES + 256 * 1024, 0x20), { qos: 1 });
    await waitForClose(deviceA);

    const refused = logged('packet too large, closing the connection', { clientId: DEVICE_A });
    expect(refused).toHaveLength(1);
    expect(refused[0]?.reason).toMatch(/^publish packet of \d+ bytes exceeds the limit of \d+ bytes$/);
    // the ACL never saw it: the packet was never assembled
    expect(logged('publish denied, closing the connection', { clientId: DEVICE_A })).toHaveLength(deniedBefore);
  });
});

describe('subscribing', () => {
  it("a device cannot subscribe to another device's sync/ack: SUBACK 128, nothing received, still connected", async () => {
    const service = await bridge();
    const deviceA = await device(DEVICE_A);
    const received = collectMessages(deviceA);

    expect(await subscribeGranted(deviceA, [topics.syncAck(DEVICE_B), topics.syncAck(DEVICE_A)])).toEqual([128, 1]);
    await service.publishAsync(topics.syncAck(DEVICE_B), JSON.stringify({ leaked: true }), { qos: 1 });
    await barrier(service, received, topics.syncAck(DEVICE_A));

    expect(received.filter((message) => message.topic === topics.syncAck(DEVICE_B))).toEqual([]);
    expect(deviceA.connected).toBe(true);
    expect(logged('subscription denied', { clientId: DEVICE_A, topicFilter: topics.syncAck(DEVICE_B) })).toHaveLength(
      1,
    );
  });

  it('a subscription requested at QoS 0 is granted and delivered at QoS 1', async () => {
    const service = await bridge();
    const deviceA = await device(DEVICE_A);
    const granted = await new Promise<number[]>((resolve, reject) =>
      deviceA.subscribe(topics.syncAck(DEVICE_A), { qos: 0 }, (error, _grants, packet) =>
        packet && 'granted' in packet ? resolve(packet.granted as number[]) : reject(error ?? new Error('no SUBACK')),
      ),
    );
    // aedes 1.2.0 alone would echo the requested 0 (broker/subscribe-qos.ts)
    expect(granted).toEqual([1]);
    const deliveredQos: number[] = [];
    deviceA.on('message', (_topic, _payload, packet) => deliveredQos.push(packet.qos));

    await service.publishAsync(topics.syncAck(DEVICE_A), '{}', { qos: 1 });
    await waitUntil(() => deliveredQos.length === 1, 'the ack at the device');
    expect(deliveredQos).toEqual([1]);
  });

  it('a device cannot subscribe to devices/# or to all sync acks', async () => {
    const deviceA = await device(DEVICE_A);
    expect(await subscribeGranted(deviceA, ['devices/#', 'devices/+/sync/ack', '#'])).toEqual([128, 128, 128]);
    expect(deviceA.connected).toBe(true);
  });

  it('a persistent session does not get messages for a refused filter after reconnecting', async () => {
    // aedes 1.2.0 alone stores all filters of a SUBSCRIBE packet for a clean:false session once one
    // of them is granted and queues messages for them while the client is offline
    // (broker/session-subscriptions.ts); now nothing is queued, so nothing has to be withheld
    const service = await bridge();
    const first = await device(DEVICE_A, { clean: false });
    expect(await subscribeGranted(first, [topics.syncAck(DEVICE_A), topics.syncAck(DEVICE_B)])).toEqual([1, 128]);
    await first.endAsync();

    await service.publishAsync(topics.syncAck(DEVICE_B), JSON.stringify({ leaked: true }), { qos: 1 });
    const ownAck = JSON.stringify({ own: true });
    await service.publishAsync(topics.syncAck(DEVICE_A), ownAck, { qos: 1 });

    const reconnected = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, {
      ...certs.devices[DEVICE_A]!,
      clientId: DEVICE_A,
      clean: false,
      reconnectPeriod: 0,
    });
    openClients.add(reconnected);
    const received = collectMessages(reconnected);
    await waitUntil(() => received.some((message) => message.payload === ownAck), 'the queued ack of the own device');

    await barrier(service, received, topics.syncAck(DEVICE_A));
    expect(received.filter((message) => message.topic === topics.syncAck(DEVICE_B))).toEqual([]);
    expect(logged('delivery withheld', { clientId: DEVICE_A, topic: topics.syncAck(DEVICE_B) })).toEqual([]);
    await reconnected.endAsync();
    // end the persistent session so later tests start clean
    await (await device(DEVICE_A, { clean: true })).endAsync();
  });
});

describe('observers', () => {
  it('an observer reads everything under devices/ but cannot publish', async () => {
    const observer = await connect(certs.observers.explorer!, 'explorer');
    expect(await subscribeGranted(observer, ['devices/#', '$SYS/#'])).toEqual([1, 128]);
    const received = collectMessages(observer);
    const deviceA = await device(DEVICE_A);

    await deviceA.publishAsync(topics.telemetry(DEVICE_A), JSON.stringify({ observed: true }), { qos: 1 });
    await waitUntil(
      () => received.some((message) => message.topic === topics.telemetry(DEVICE_A)),
      'the telemetry at the observer',
    );

    observer.publish(topics.syncAck(DEVICE_A), JSON.stringify({ fake: true }), { qos: 1 });
    await waitForClose(observer);
    expect(logged('publish denied, closing the connection', { clientId: 'explorer' }).at(-1)?.reason).toContain(
      'read-only',
    );
  });
});

describe('connection refusals', () => {
  /** The broker's "TLS handshake refused" log lines written while `attempt` ran. */
  async function tlsRefusalsDuring(attempt: () => Promise<Outcome>): Promise<{ outcome: Outcome; reasons: string[] }> {
    const before = logLines.length;
    const outcome = await attempt();
    const reasons = () =>
      logLines
        .slice(before)
        .filter((line) => line.msg === 'TLS handshake refused')
        .map((line) => String(line.reason));
    await waitUntil(() => reasons().length > 0, 'the broker to log the refused handshake');
    return { outcome, reasons: reasons() };
  }

  it('a client without a certificate is refused during the TLS handshake', async () => {
    const { outcome, reasons } = await tlsRefusalsDuring(() => attemptConnection({ ca: certs.ca }, DEVICE_A));
    expect(outcome.connected).toBe(false);
    expect(outcome.connected ? undefined : outcome.error?.message).toMatch(/certificate required/i);
    expect(reasons).toEqual([expect.stringMatching(/peer did not return a certificate/)]);
  });

  it('a certificate from another CA is refused during the TLS handshake', async () => {
    // node destroys the socket without a TLS alert, so the client sees only a closed connection
    const { outcome, reasons } = await tlsRefusalsDuring(() =>
      attemptConnection({ ca: certs.ca, cert: rogue.cert, key: rogue.key }, DEVICE_A),
    );
    expect(outcome.connected).toBe(false);
    expect(reasons).toEqual(['client certificate rejected: UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  });

  it('a TLS 1.2-only client is refused', async () => {
    const { outcome, reasons } = await tlsRefusalsDuring(() =>
      attemptConnection(certs.devices[DEVICE_A]!, DEVICE_A, { maxVersion: 'TLSv1.2' } as IClientOptions),
    );
    expect(outcome.connected).toBe(false);
    expect(outcome.connected ? undefined : outcome.error?.message).toMatch(/protocol version/i);
    expect(reasons).toEqual([expect.stringMatching(/unsupported protocol/)]);
  });

  it('a clientId other than the certificate CN gets CONNACK 5 (not authorized)', async () => {
    const outcome = await attemptConnection(certs.devices[DEVICE_A]!, DEVICE_B);
    expect(outcome.connected).toBe(false);
    expect(outcome.connected ? undefined : (outcome.error as Error & { code?: number })?.code).toBe(5);
    const refusal = logged('connection refused', { clientId: DEVICE_B, code: 'client-id-mismatch' });
    expect(refusal).toHaveLength(1);
    expect(refusal[0]?.reason).toBe(
      `clientId '${DEVICE_B}' does not match the certificate CN '${DEVICE_A}'; connect with clientId = CN`,
    );
  });

  it("a will on another device's topic gets CONNACK 5", async () => {
    const outcome = await attemptConnection(certs.devices[DEVICE_A]!, DEVICE_A, {
      will: { topic: topics.status(DEVICE_B), payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    expect(outcome.connected).toBe(false);
    expect(outcome.connected ? undefined : (outcome.error as Error & { code?: number })?.code).toBe(5);
    expect(logged('connection refused', { clientId: DEVICE_A, code: 'will-denied' })).toHaveLength(1);
  });

  it('a device will on its own status topic is accepted and published when the device drops', async () => {
    const service = await bridge();
    await subscribeGranted(service, [topics.status(DEVICE_A)]);
    const received = collectMessages(service);
    const will = JSON.stringify({ online: false, at: '2026-01-01T00:00:00.000Z' });
    const deviceA = await device(DEVICE_A, {
      will: { topic: topics.status(DEVICE_A), payload: Buffer.from(will), qos: 1, retain: true },
    });

    deviceA.stream.destroy(); // an abrupt drop, not a DISCONNECT
    await waitUntil(() => received.some((message) => message.payload === will), 'the will at the bridge');
  });
});

describe('metrics', () => {
  async function scrape(): Promise<(series: string) => number> {
    const text = await (await fetch(`http://127.0.0.1:${broker.metricsPort}/metrics`)).text();
    return (series) => {
      const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    };
  }

  it('serves /healthz', async () => {
    const health = await fetch(`http://127.0.0.1:${broker.metricsPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('counts connected clients, refused connections and denied subscriptions and publishes', async () => {
    const before = await scrape();
    const deviceA = await device(DEVICE_A);
    await subscribeGranted(deviceA, [topics.syncAck(DEVICE_B)]);
    await attemptConnection(certs.devices[DEVICE_B]!, DEVICE_A);
    await attemptConnection({ ca: certs.ca }, DEVICE_A);
    const during = await scrape();
    deviceA.publish(topics.syncAck(DEVICE_A), '{}', { qos: 1 });
    await waitForClose(deviceA);
    const after = await scrape();

    expect(during('mqtt_broker_connected_clients')).toBe(before('mqtt_broker_connected_clients') + 1);
    const delta = (series: string) => after(series) - before(series);
    expect(delta('mqtt_broker_denied_subscriptions_total{role="device"}')).toBe(1);
    expect(delta('mqtt_broker_refused_connections_total{reason="client-id-mismatch"}')).toBe(1);
    expect(delta('mqtt_broker_refused_connections_total{reason="tls-handshake"}')).toBe(1);
    expect(delta('mqtt_broker_denied_publishes_total{role="device"}')).toBe(1);
  });
});
