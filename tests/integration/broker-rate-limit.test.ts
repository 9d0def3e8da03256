/**
 * Per-device publish rate limits at the broker (G7), with real TLS, a real Aedes, mqtt.js and
 * mosquitto_pub: a device over its limit is slowed (its PUBACKs held back, in order, counted),
 * a device that stays over is disconnected, and another device is not slowed meanwhile. What is
 * asserted are the broker's events (log lines per client) and metrics, never elapsed time.
 */
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PublishRateLimits } from '../../broker/publish-rate-limit.js';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { mosquittoConnectArgs, runMosquitto } from '../helpers/mosquitto.js';
import { collectMessages, subscribeGranted, waitUntil } from '../helpers/mqtt-observe.js';
import { waitFor } from '../helpers/wait.js';

const FLOODER = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const OTHER = '6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a';

type LogLine = { msg: string; [field: string]: unknown };

/** 20 messages/s, 5 at once; 1 MiB/s, 1 MiB at once. */
const SLOW: PublishRateLimits = {
  messages: { perSecond: 20, burst: 5 },
  bytes: { perSecond: 1024 * 1024, burst: 1024 * 1024 },
  maxThrottledMs: 120_000,
};

let certs: TestCertificates;
let slow: RunningBroker;
let strict: RunningBroker;
const logLines: LogLine[] = [];
const openClients = new Set<MqttClient>();

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [FLOODER, OTHER], serviceNames: ['bridge'] });
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as LogLine);
        callback();
      },
    }),
  );
  const common = { tls: certs.broker, host: '127.0.0.1', port: 0, metricsPort: 0 };
  [slow, strict] = await Promise.all([
    startBroker({ ...common, publishRateLimits: SLOW, logger: logger.child({ broker: 'slow' }) }),
    startBroker({
      ...common,
      publishRateLimits: { ...SLOW, maxThrottledMs: 1_500 },
      logger: logger.child({ broker: 'strict' }),
    }),
  ]);
});

afterEach(async () => {
  await Promise.all([...openClients].map((client) => client.endAsync(true)));
  openClients.clear();
});

afterAll(async () => {
  await Promise.all([slow?.close(), strict?.close()]);
  await certs?.cleanup();
});

// ---------------------------------------------------------------------------------------------
// helpers

async function connect(broker: RunningBroker, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const material = clientId === 'bridge' ? certs.services.bridge! : certs.devices[clientId]!;
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
    ...material,
    clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    ...extra,
  });
  openClients.add(client);
  return client;
}

function logged(broker: string, msg: string, clientId: string): LogLine[] {
  return logLines.filter((line) => line.broker === broker && line.msg === msg && line.clientId === clientId);
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
    await waitUntil(() => received.length === 40, 'the 40 messages at the bridge');
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
    await waitUntil(() => logged('slow', SLOWING, FLOODER).length > slowingBefore, 'the flooder to be slowed');

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
    await waitUntil(() => !flooder.connected, 'the flooder to be gone');
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
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const { all } = flood(device, 200, () => '{}');
    all.catch(() => undefined);
    await closed;
    expect(logged('strict', DISCONNECTING, OTHER)).toHaveLength(before + 1);
  });
});
