/**
 * Per-device publish rate limits at the broker (G7), with real TLS, a real Aedes, mqtt.js and
 * mosquitto_pub: a device over its limit is slowed (its PUBACKs held back, in order, counted),
 * a device that stays over is disconnected, and another device is not slowed meanwhile. What is
 * asserted are the broker's events (log lines per client) and metrics, never elapsed time.
 */
import type { IClientOptions, MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PublishRateLimits } from '../../broker/publish-rate-limit.js';
import type { RunningBroker } from '../../broker/server.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { capturedLogger, type LogLine } from '../helpers/logger.js';
import { mosquittoConnectArgs, runMosquitto } from '../helpers/mosquitto.js';
import { openRawMqtts, rawPackets } from '../helpers/raw-mqtt.js';
import { closed, connectClient } from '../helpers/mqtt-client.js';
import { collectMessages, DELIVERY_POLL, subscribeGranted } from '../helpers/mqtt-observe.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';
import { waitFor } from '../helpers/wait.js';

const FLOODER = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const OTHER = '6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a';

/** 20 messages/s, 5 at once; 1 MiB/s, 1 MiB at once. */
const SLOW: PublishRateLimits = {
  messages: { perSecond: 20, burst: 5 },
  bytes: { perSecond: 1024 * 1024, burst: 1024 * 1024 },
  maxThrottledMs: 120_000,
};

let certs: TestCertificates;
let slow: TestTlsBroker;
let strict: TestTlsBroker;
/** 1 message/s, 5 at once, disconnected after 1.5 s over: a reconnect within a second refills nothing */
let sticky: TestTlsBroker;
const log = capturedLogger();

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [FLOODER, OTHER], serviceNames: ['bridge'] });
  const common = { tls: certs.broker, metricsPort: 0 };
  [slow, strict, sticky] = await Promise.all([
    startTlsBroker({ ...common, publishRateLimits: SLOW, logger: log.logger.child({ broker: 'slow' }) }),
    startTlsBroker({
      ...common,
      publishRateLimits: { ...SLOW, maxThrottledMs: 1_500 },
      logger: log.logger.child({ broker: 'strict' }),
    }),
    startTlsBroker({
      ...common,
      publishRateLimits: { ...SLOW, messages: { perSecond: 1, burst: 5 }, maxThrottledMs: 1_500 },
      logger: log.logger.child({ broker: 'sticky' }),
    }),
  ]);
});

// ---------------------------------------------------------------------------------------------
// helpers

function connect(broker: TestTlsBroker, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const material = clientId === 'bridge' ? certs.services.bridge! : certs.devices[clientId]!;
  return connectClient(broker.url, { ...material, clientId, ...extra });
}

function logged(broker: string, msg: string, clientId: string): LogLine[] {
  return log.logged(msg, { broker, clientId });
}

async function scrape(broker: RunningBroker): Promise<(series: string) => number> {
  const text = await (await fetch(`http://127.0.0.1:${broker.metricsPort}/metrics`)).text();
  return (series) => {
    const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
}

/** Publishes `count` messages at once (no waiting for PUBACKs); resolves the PUBACK order and the client. */
function flood(client: MqttClient, count: number, payload: (index: number) => Buffer | string) {
  const acked: number[] = [];
  const all = Promise.all(
    Array.from({ length: count }, (_, index) =>
      client.publishAsync(topics.telemetry(String(client.options.clientId)), payload(index), { qos: 1 }).then(() => {
        acked.push(index);
      }),
    ),
  );
  return { acked, all };
}

const DELAYED = 'publish delayed';
const SLOWING = 'publish rate over the limit: slowing the client down';
const DISCONNECTING = 'publish rate over the limit for too long: disconnecting the client';

// ---------------------------------------------------------------------------------------------

describe('a device over its limit', () => {
  it('is slowed: its PUBACKs are held back, counted and come in order, nothing is lost, and it stays connected', async () => {
    const service = await connect(slow, 'bridge');
    await subscribeGranted(service, [topics.telemetry(FLOODER)]);
    const received = collectMessages(service);
    const before = await scrape(slow);
    const delayedBefore = logged('slow', DELAYED, FLOODER).length;
    const device = await connect(slow, FLOODER);

    const { acked, all } = flood(device, 40, (index) => JSON.stringify({ index }));
    await all;

    expect(acked).toEqual(Array.from({ length: 40 }, (_, index) => index));
    await expect.poll(() => received.length, DELIVERY_POLL).toBe(40);
    expect(received.map((message) => (JSON.parse(message.payload) as { index: number }).index)).toEqual(acked);
    expect(device.connected).toBe(true);

    // 40 at once against a burst of 5 at 20/s: most of them waited, each by a logged amount
    const delayed = logged('slow', DELAYED, FLOODER).slice(delayedBefore);
    expect(delayed.length).toBeGreaterThanOrEqual(20);
    expect(delayed.every((line) => (line.delayMs as number) >= 0)).toBe(true);
    const after = await scrape(slow);
    const delta = (series: string) => after(series) - before(series);
    expect(delta('mqtt_broker_throttled_publishes_total{role="device"}')).toBe(delayed.length);
    // the held-back publishes owed at least (40 - 5 - refill) / 20 s together
    expect(delta('mqtt_broker_throttle_delay_seconds_total{role="device"}')).toBeGreaterThan(1);
    expect(logged('slow', SLOWING, FLOODER).length).toBeGreaterThanOrEqual(1);
    expect(delta('mqtt_broker_disconnects_total{reason="rate-limit"}')).toBe(0);
  });

  it('is slowed by its byte rate too', async () => {
    const delayedBefore = logged('slow', DELAYED, OTHER).length;
    const device = await connect(slow, OTHER);
    // 12 × 256 KiB against 1 MiB at once and 1 MiB/s: the last 8 wait
    const { acked, all } = flood(device, 12, () => Buffer.alloc(256 * 1024, 0x20));
    await all;
    expect(acked).toEqual(Array.from({ length: 12 }, (_, index) => index));
    const delayed = logged('slow', DELAYED, OTHER).slice(delayedBefore);
    expect(delayed.length).toBeGreaterThanOrEqual(6);
    expect(delayed.every((line) => line.payloadBytes === 256 * 1024)).toBe(true);
  });

  it("does not slow another device: the other's PUBACKs are not held back and arrive while the flooder is throttled", async () => {
    const flooder = await connect(slow, FLOODER);
    const slowingBefore = logged('slow', SLOWING, FLOODER).length;
    const otherDelayedBefore = logged('slow', DELAYED, OTHER).length;
    // 400 messages at 20/s: held back for ~20 s
    const { acked, all } = flood(flooder, 400, (index) => JSON.stringify({ index }));
    all.catch(() => undefined); // the flooder is closed below with its publishes unacknowledged
    await expect.poll(() => logged('slow', SLOWING, FLOODER).length, DELIVERY_POLL).toBeGreaterThan(slowingBefore);

    const other = await connect(slow, OTHER);
    for (let index = 0; index < 5; index++) {
      await other.publishAsync(topics.telemetry(OTHER), JSON.stringify({ index }), { qos: 1 });
    }

    // the other device got its 5 PUBACKs while the flooder was still waiting for most of its own
    expect(acked.length).toBeLessThan(400);
    expect((await scrape(slow))('mqtt_broker_throttled_clients')).toBe(1);
    expect(logged('slow', DELAYED, OTHER).slice(otherDelayedBefore)).toEqual([]);
    expect(logged('slow', DELAYED, FLOODER).length).toBeGreaterThan(0);

    // a flooder that goes away leaves nothing held back
    await flooder.endAsync(true);
    await closed(flooder);
    await waitFor(
      'no throttled client left',
      async () => (await scrape(slow))('mqtt_broker_throttled_clients'),
      (count) => count === 0,
    );
  });
});

describe('a device that stays over its limit', () => {
  it('is disconnected (mosquitto_pub repeating a publish), with a log line of its rates, and counted', async () => {
    const before = await scrape(strict);
    const files = certs.bundle.devices[FLOODER]!;
    const result = await runMosquitto(
      'mosquitto_pub',
      [
        ...mosquittoConnectArgs(strict.port, {
          caPath: certs.bundle.ca.certPath,
          certPath: files.certPath,
          keyPath: files.keyPath,
          clientId: FLOODER,
        }),
        '-q',
        '1',
        '-t',
        topics.telemetry(FLOODER),
        '-m',
        '{"flood":true}',
        '--repeat',
        '1000',
      ],
      60_000,
    );
    expect(result.code).not.toBe(0);

    const disconnected = logged('strict', DISCONNECTING, FLOODER);
    expect(disconnected).toHaveLength(1);
    expect(disconnected[0]).toMatchObject({
      role: 'device',
      messagesPerSecondLimit: 20,
      bytesPerSecondLimit: 1024 * 1024,
      maxThrottledMs: 1_500,
    });
    expect(disconnected[0]?.throttledForMs).toBeGreaterThan(0);
    expect(disconnected[0]?.messagesPerSecond).toBeGreaterThan(0);
    const after = await scrape(strict);
    expect(
      after('mqtt_broker_disconnects_total{reason="rate-limit"}') -
        before('mqtt_broker_disconnects_total{reason="rate-limit"}'),
    ).toBe(1);
  });

  it('is disconnected at once when one burst owes more than the limit allows (mqtt.js, no waiting for PUBACKs)', async () => {
    const before = logged('strict', DISCONNECTING, OTHER).length;
    const device = await connect(strict, OTHER);
    const { all } = flood(device, 200, () => '{}');
    all.catch(() => undefined);
    await closed(device, DELIVERY_POLL.timeout);
    expect(logged('strict', DISCONNECTING, OTHER)).toHaveLength(before + 1);
  });
});

describe('a device that reconnects', () => {
  it('gets no fresh burst after it was disconnected for flooding: its first publish on the new connection waits', async () => {
    const flooder = await connect(sticky, FLOODER);
    const { all } = flood(flooder, 50, (index) => JSON.stringify({ index }));
    all.catch(() => undefined);
    await closed(flooder, DELIVERY_POLL.timeout);
    expect(logged('sticky', DISCONNECTING, FLOODER)).toHaveLength(1);

    // keyed by connection, these 3 publishes would pass at once (a new burst of 5)
    const delayedBefore = logged('sticky', DELAYED, FLOODER).length;
    const back = await connect(sticky, FLOODER);
    const publishes = flood(back, 3, (index) => JSON.stringify({ again: index }));
    publishes.all.catch(() => undefined);
    await expect.poll(() => logged('sticky', DELAYED, FLOODER).length, DELIVERY_POLL).toBeGreaterThan(delayedBefore);
    expect(publishes.acked.length).toBeLessThan(3);
    await back.endAsync(true);
  });

  it('is not charged for the publishes its last connection held back and dropped', async () => {
    const device = await connect(sticky, OTHER);
    // 5 pass (the burst), the 6th is held back for 1 s and dropped when the device leaves at once
    const first = flood(device, 6, (index) => JSON.stringify({ index }));
    first.all.catch(() => undefined);
    await expect.poll(() => first.acked.length, DELIVERY_POLL).toBe(5);
    await device.endAsync(true);
    await closed(device);
    // 1.2 s later one token came back; the dropped publish owes nothing, so one publish passes at once
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const delayedBefore = logged('sticky', DELAYED, OTHER).length;
    const back = await connect(sticky, OTHER);
    await back.publishAsync(topics.telemetry(OTHER), '{"again":true}', { qos: 1 });
    expect(logged('sticky', DELAYED, OTHER).slice(delayedBefore)).toEqual([]);
    await back.endAsync(true);
  });
});

describe('publishes a client sent before the broker closed its connection', () => {
  it('are neither acknowledged nor routed, and never skip the rate limit (aedes handles them after close)', async () => {
    const service = await connect(slow, 'bridge');
    await subscribeGranted(service, [topics.telemetry(FLOODER)]);
    const received = collectMessages(service);
    const droppedBefore = (await scrape(slow))('mqtt_broker_dropped_publishes_total{kind="after-close"}');
    const tls = certs.devices[FLOODER]!;

    // a persistent session with a subscription: aedes then closes the connection asynchronously
    // (it unsubscribes first), and goes on handling the packets it had read meanwhile
    const first = await openRawMqtts(slow.port, tls);
    first.send(rawPackets.connect({ clientId: FLOODER, keepaliveSeconds: 60, clean: false }));
    await first.next(2);
    first.send(rawPackets.subscribe(1, [[topics.commandsFilter(FLOODER), 1]]));
    await first.next(9);
    first.destroy();
    await first.closed;

    // one write: CONNECT, a publish the ACL denies (another device's topic: the connection is
    // closed), then 40 publishes of its own. Before: 14 of them were acknowledged and routed, and
    // never counted by the rate limit (its burst here is 5)
    const second = await openRawMqtts(slow.port, tls);
    const own = Array.from({ length: 40 }, (_, index) =>
      rawPackets.publishQos1(index + 2, topics.telemetry(FLOODER), JSON.stringify({ index })),
    );
    second.send(
      Buffer.concat([
        rawPackets.connect({ clientId: FLOODER, keepaliveSeconds: 60, clean: false }),
        rawPackets.publishQos1(1, topics.telemetry(OTHER), '{}'),
        ...own,
      ]),
    );
    await second.closed;
    await expect
      .poll(async () => (await scrape(slow))('mqtt_broker_dropped_publishes_total{kind="after-close"}'), DELIVERY_POLL)
      .toBeGreaterThan(droppedBefore);
    // let anything that would still be routed arrive
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(received).toEqual([]);
    expect(second.received.filter((packet) => packet.type === 4)).toEqual([]); // no PUBACK
    await service.endAsync(true);
  });
});
