/**
 * The broker's security with real TLS, a real Aedes and real mqtt.js clients: identity from the
 * client certificate, topic permissions by role, QoS and size limits.
 */
import type { IClientOptions, MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import { topics } from '../../schemas/topics.js';
import {
  createRogueClientCertificate,
  createTestCertificates,
  type TestCertificates,
  type TlsFiles,
} from '../helpers/certs.js';
import { capturedLogger } from '../helpers/logger.js';
import { closed, connectClient, connection, openClient, type ConnectionOutcome } from '../helpers/mqtt-client.js';
import { barrier, collectMessages, DELIVERY_POLL, subscribeGranted, waitForPayload } from '../helpers/mqtt-observe.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICE_A = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const DEVICE_B = '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c';

const log = capturedLogger();
const { logged } = log;
let certs: TestCertificates;
let rogue: TlsFiles;
let broker: TestTlsBroker;

beforeAll(async () => {
  [certs, rogue] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE_A, DEVICE_B], serviceNames: ['bridge'], observerNames: ['explorer'] }),
    createRogueClientCertificate({ commonName: DEVICE_A, role: 'device' }),
  ]);
  broker = await startTlsBroker({ tls: certs.broker, metricsPort: 0, logger: log.logger });
});

// ---------------------------------------------------------------------------------------------
// helpers

/** Connects once (no reconnects) and reports whether a session was established. */
function attemptConnection(
  material: Partial<TlsFiles>,
  clientId: string,
  extra: IClientOptions = {},
): Promise<ConnectionOutcome> {
  return connection(openClient(broker.url, { ...material, clientId, ...extra }));
}

const connect = (material: Partial<TlsFiles>, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> =>
  connectClient(broker.url, { ...material, clientId, ...extra });

const device = (id: string, extra?: IClientOptions) => connect(certs.devices[id]!, id, extra);
const bridge = () => connect(certs.services.bridge!, 'bridge');

// ---------------------------------------------------------------------------------------------

describe('publishing', () => {
  it('a device publishes its telemetry and the bridge receives it', async () => {
    const service = await bridge();
    expect(await subscribeGranted(service, ['devices/+/telemetry'])).toEqual([1]);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    const payload = JSON.stringify({ batchId: 'b1', records: [] });
    await deviceA.publishAsync(topics.telemetry(DEVICE_A), payload, { qos: 1 });

    await expect.poll(() => received, DELIVERY_POLL).toHaveLength(1);
    expect(received).toEqual([{ topic: topics.telemetry(DEVICE_A), payload, retain: false, qos: 1 }]);
  });

  it('a device cannot publish as another device: disconnected, nothing delivered', async () => {
    const service = await bridge();
    await subscribeGranted(service, ['devices/+/telemetry']);
    const received = collectMessages(service);
    const deviceA = await device(DEVICE_A);

    deviceA.publish(topics.telemetry(DEVICE_B), JSON.stringify({ forged: true }), { qos: 1 });
    await closed(deviceA);

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
    await closed(deviceA);

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
    await closed(deviceA);

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
    await closed(deviceA);

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
    const granted = await subscribeGranted(deviceA, [topics.syncAck(DEVICE_A)], 0);
    // aedes 1.2.0 alone would echo the requested 0 (broker/subscribe-qos.ts)
    expect(granted).toEqual([1]);
    const deliveredQos: number[] = [];
    deviceA.on('message', (_topic, _payload, packet) => deliveredQos.push(packet.qos));

    await service.publishAsync(topics.syncAck(DEVICE_A), '{}', { qos: 1 });
    await expect.poll(() => deliveredQos, DELIVERY_POLL).toHaveLength(1);
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

    const reconnected = openClient(broker.url, { ...certs.devices[DEVICE_A]!, clientId: DEVICE_A, clean: false });
    const received = collectMessages(reconnected);
    await waitForPayload(received, ownAck);

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
    await expect
      .poll(() => received.map((message) => message.topic), DELIVERY_POLL)
      .toContain(topics.telemetry(DEVICE_A));

    observer.publish(topics.syncAck(DEVICE_A), JSON.stringify({ fake: true }), { qos: 1 });
    await closed(observer);
    expect(logged('publish denied, closing the connection', { clientId: 'explorer' }).at(-1)?.reason).toContain(
      'read-only',
    );
  });
});

describe('connection refusals', () => {
  /** The broker's "TLS handshake refused" log lines written while `attempt` ran. */
  async function tlsRefusalsDuring(
    attempt: () => Promise<ConnectionOutcome>,
  ): Promise<{ outcome: ConnectionOutcome; reasons: string[] }> {
    const before = log.lines.length;
    const outcome = await attempt();
    const reasons = () =>
      log.lines
        .slice(before)
        .filter((line) => line.msg === 'TLS handshake refused')
        .map((line) => String(line.reason));
    await expect.poll(() => reasons().length, DELIVERY_POLL).toBeGreaterThan(0);
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
    await waitForPayload(received, will);
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
    await closed(deviceA);
    const after = await scrape();

    expect(during('mqtt_broker_connected_clients')).toBe(before('mqtt_broker_connected_clients') + 1);
    const delta = (series: string) => after(series) - before(series);
    expect(delta('mqtt_broker_denied_subscriptions_total{role="device"}')).toBe(1);
    expect(delta('mqtt_broker_refused_connections_total{reason="client-id-mismatch"}')).toBe(1);
    expect(delta('mqtt_broker_refused_connections_total{reason="tls-handshake"}')).toBe(1);
    expect(delta('mqtt_broker_denied_publishes_total{role="device"}')).toBe(1);
  });
});
