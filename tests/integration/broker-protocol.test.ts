/**
 * MQTT 3.1.1 conformance of the broker where aedes 1.2.0 needed help, checked with the bytes on
 * the wire (a raw client, tests/helpers/raw-mqtt.ts) and with third-party clients (mosquitto_pub,
 * mosquitto_sub): SUBACK return codes, CONNACK for keepalive 0, what a persistent session stores
 * from a SUBSCRIBE that mixed allowed and refused filters, and the validation of retained status
 * payloads. Real TLS, a real Aedes.
 */
import { execFile } from 'node:child_process';
import type { IClientOptions, MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../broker/server.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates, type TlsFiles } from '../helpers/certs.js';
import { capturedLogger } from '../helpers/logger.js';
import { mosquittoConnectArgs, runMosquitto, type MosquittoIdentity } from '../helpers/mosquitto.js';
import { connectClient, openClient } from '../helpers/mqtt-client.js';
import {
  barrier,
  collectMessages,
  DELIVERY_POLL,
  subscribeGranted,
  waitForPayload,
  type ReceivedMessage,
} from '../helpers/mqtt-observe.js';
import { openRawMqtts, rawPackets, type RawMqttConnection } from '../helpers/raw-mqtt.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE_A = '3b0f6c1e-8d2a-4f7b-9c5e-2a1d0e9f8b7c';
const DEVICE_B = '9e4d2c1b-0a3f-4e5d-8c7b-6a5f4e3d2c1b';
const CONNACK = 2;
const SUBACK = 9;

let certs: TestCertificates;
let broker: TestTlsBroker;
const { logger, logged } = capturedLogger();

beforeAll(async () => {
  certs = await createTestCertificates({
    deviceIds: [DEVICE_A, DEVICE_B],
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
  });
  broker = await startTlsBroker({ tls: certs.broker, metricsPort: 0, logger });
});

// ---------------------------------------------------------------------------------------------
// helpers

const connect = (material: TlsFiles, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> =>
  connectClient(broker.url, { ...material, clientId, ...extra });

const device = (id: string, extra?: IClientOptions) => connect(certs.devices[id]!, id, extra);
const bridge = () => connect(certs.services.bridge!, 'bridge');

const raw = (target: RunningBroker, material: TlsFiles): Promise<RawMqttConnection> =>
  openRawMqtts(target.port, material);

async function scrape(target: RunningBroker): Promise<(series: string) => number> {
  const text = await (await fetch(`http://127.0.0.1:${target.metricsPort}/metrics`)).text();
  return (series) => {
    const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
}

/** barrier() for a status topic: the marker must be a valid status, or the broker drops it. */
async function statusBarrier(publisher: MqttClient, received: ReceivedMessage[], deviceId: string): Promise<string> {
  const marker = JSON.stringify({
    online: true,
    at: new Date(Date.now() - Math.floor(Math.random() * 1e9)).toISOString(),
  });
  await publisher.publishAsync(topics.status(deviceId), marker, { qos: 1 });
  await waitForPayload(received, marker);
  return marker;
}

function mosquittoIdentity(role: 'devices' | 'observers', name: string): MosquittoIdentity {
  const files = certs.bundle[role][name]!;
  return { caPath: certs.bundle.ca.certPath, certPath: files.certPath, keyPath: files.keyPath, clientId: name };
}

// ---------------------------------------------------------------------------------------------

describe('SUBACK', () => {
  it('grants QoS 1 to filters requested at QoS 0 and 2 and 128 to a refused one, on the wire', async () => {
    const connection = await raw(broker, certs.devices[DEVICE_A]!);
    connection.send(rawPackets.connect({ clientId: DEVICE_A, keepaliveSeconds: 30, clean: true }));
    expect((await connection.next(CONNACK)).bytes).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]));

    connection.send(
      rawPackets.subscribe(7, [
        [topics.syncAck(DEVICE_A), 0],
        [topics.configFilter(DEVICE_A), 2],
        [topics.syncAck(DEVICE_B), 0],
      ]),
    );
    // SUBACK, remaining length 5, packet id 7, then one return code per filter
    expect((await connection.next(SUBACK)).bytes).toEqual(Buffer.from([0x90, 0x05, 0x00, 0x07, 0x01, 0x01, 0x80]));
  });

  it('grants QoS 1 to mosquitto_sub asking for QoS 2 (its debug output prints the SUBACK)', async () => {
    const result = await runMosquitto('mosquitto_sub', [
      ...mosquittoConnectArgs(broker.port, mosquittoIdentity('devices', DEVICE_A)),
      '-d',
      '-q',
      '2',
      '-t',
      topics.syncAck(DEVICE_A),
      '-W',
      '1',
    ]);
    expect(result.stdout).toContain('Subscribed (mid: 1): 1');
  });
});

describe('paho-mqtt (Python, Debian 1.6.1)', () => {
  /**
   * connects with a keepalive above the broker's limit (aedes alone: CONNACK 6), subscribes to two
   * filters at QoS 0 and 2, prints the CONNACK and SUBACK codes. Not keepalive 0: paho 1.6.1 sets
   * the socket timeout to the keepalive before the TLS handshake (client.py reconnect), so 0 makes
   * the handshake non-blocking and it fails with SSLWantReadError unless the server answers at once.
   */
  const PAHO = `
import json, ssl, sys
import paho.mqtt.client as mqtt
host, port, client_id, ca, cert, key, first, second = sys.argv[1:9]
out = {}
def on_connect(client, userdata, flags, rc):
    out['connack'] = rc
    if rc == 0:
        client.subscribe([(first, 0), (second, 2)])
    else:
        client.disconnect()
def on_subscribe(client, userdata, mid, granted_qos):
    out['granted'] = list(granted_qos)
    client.disconnect()
client = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.connect(host, int(port), keepalive=65535)
client.loop_forever()
print(json.dumps(out))
`;

  it('is accepted with a keepalive above the limit (CONNACK 0) and told QoS 1 for filters requested at QoS 0 and 2', async () => {
    const files = certs.bundle.devices[DEVICE_A]!;
    const result = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(
        '/usr/bin/python3',
        [
          '-c',
          PAHO,
          '127.0.0.1',
          String(broker.port),
          DEVICE_A,
          certs.bundle.ca.certPath,
          files.certPath,
          files.keyPath,
          topics.syncAck(DEVICE_A),
          topics.configFilter(DEVICE_A),
        ],
        { timeout: 15_000 },
        (error, stdout, stderr) =>
          error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve({ stdout, stderr }),
      ),
    );
    expect(JSON.parse(result.stdout)).toEqual({ connack: 0, granted: [1, 1] });
  });
});

describe('keepalive', () => {
  it('a CONNECT with keepalive 0 or above the limit gets CONNACK 0, never the undefined return code 6', async () => {
    for (const keepaliveSeconds of [0, 65_535]) {
      const connection = await raw(broker, certs.devices[DEVICE_A]!);
      connection.send(rawPackets.connect({ clientId: DEVICE_A, keepaliveSeconds, clean: true }));
      expect((await connection.next(CONNACK)).bytes, `keepalive ${keepaliveSeconds}`).toEqual(
        Buffer.from([0x20, 0x02, 0x00, 0x00]),
      );
      connection.destroy();
      await connection.closed;
    }
  });

  it('a silent connection that asked for keepalive 0 is closed after 1.5 × the broker keepalive limit', async () => {
    const idle = capturedLogger();
    const strict = await startTlsBroker({ tls: certs.broker, keepaliveLimitSeconds: 1, logger: idle.logger });
    const silent = await raw(strict, certs.devices[DEVICE_B]!);
    silent.send(rawPackets.connect({ clientId: DEVICE_B, keepaliveSeconds: 0, clean: true }));
    expect((await silent.next(CONNACK)).bytes).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]));
    const pinging = await raw(strict, certs.devices[DEVICE_A]!);
    pinging.send(rawPackets.connect({ clientId: DEVICE_A, keepaliveSeconds: 0, clean: true }));
    await pinging.next(CONNACK);
    const pings = setInterval(() => pinging.send(rawPackets.pingreq()), 300);
    try {
      await silent.closed;
      expect(idle.logged('keepalive timeout').map((line) => line.clientId)).toEqual([DEVICE_B]);
      // the one that keeps talking is still there
      expect(pinging.socket.destroyed).toBe(false);
      expect(idle.logged('keepalive replaced by the broker limit', { clientId: DEVICE_B })[0]).toMatchObject({
        requested: 0,
        applied: 1,
      });
    } finally {
      clearInterval(pings);
    }
  });
});

describe('persistent sessions', () => {
  it("store only the granted filter of a mixed SUBSCRIBE: other devices' telemetry is neither queued nor withheld later", async () => {
    const service = await bridge();
    const first = await device(DEVICE_A, { clean: false });
    expect(await subscribeGranted(first, [topics.syncAck(DEVICE_A), 'devices/+/telemetry'])).toEqual([1, 128]);
    const persistence = (
      broker.aedes as unknown as { persistence: { subscriptionsByClient(c: object): Promise<object[]> } }
    ).persistence;
    expect(await persistence.subscriptionsByClient({ id: DEVICE_A })).toEqual([
      expect.objectContaining({ topic: topics.syncAck(DEVICE_A), qos: 1 }),
    ]);
    await first.endAsync();

    const deniedBefore = (await scrape(broker))('mqtt_broker_denied_deliveries_total{role="device"}');
    const other = await device(DEVICE_B);
    await other.publishAsync(topics.telemetry(DEVICE_B), JSON.stringify({ batchId: 'not-for-a', records: [] }), {
      qos: 1,
    });
    const ownAck = JSON.stringify({ own: true });
    await service.publishAsync(topics.syncAck(DEVICE_A), ownAck, { qos: 1 });

    const again = openClient(broker.url, { ...certs.devices[DEVICE_A]!, clientId: DEVICE_A, clean: false });
    const received = collectMessages(again);
    await waitForPayload(received, ownAck);
    await barrier(service, received, topics.syncAck(DEVICE_A));

    expect(received.filter((message) => message.topic !== topics.syncAck(DEVICE_A))).toEqual([]);
    expect(logged('delivery withheld', { clientId: DEVICE_A })).toEqual([]);
    expect((await scrape(broker))('mqtt_broker_denied_deliveries_total{role="device"}')).toBe(deniedBefore);
    await again.endAsync();
    await (await device(DEVICE_A, { clean: true })).endAsync(); // end the persistent session
  });

  it('drop a refused filter that an older broker stored, when the session is restored', async () => {
    const persistence = (broker.aedes as unknown as { persistence: object }).persistence as {
      subscriptionsByClient(client: object): Promise<Array<{ topic: string }>>;
    };
    // what aedes stored before session-subscriptions.ts: the prototype's method, unfiltered
    const unfilteredAdd = (
      Object.getPrototypeOf(persistence) as { addSubscriptions: (client: object, subs: object[]) => Promise<void> }
    ).addSubscriptions;
    await unfilteredAdd.call(persistence, { id: DEVICE_A }, [
      { topic: topics.syncAck(DEVICE_A), qos: 1 },
      { topic: 'devices/+/telemetry', qos: 1 },
    ]);
    const stored = async () => (await persistence.subscriptionsByClient({ id: DEVICE_A })).map((sub) => sub.topic);
    expect((await stored()).sort()).toEqual(['devices/+/telemetry', topics.syncAck(DEVICE_A)].sort());

    const restored = await device(DEVICE_A, { clean: false });
    expect(await waitFor('the refused filter to leave the session', stored, (topics) => topics.length === 1)).toEqual([
      topics.syncAck(DEVICE_A),
    ]);
    await restored.endAsync();
    await (await device(DEVICE_A, { clean: true })).endAsync();
  });
});

describe('status payloads', () => {
  it('garbage and a status from 2099 published retained by mosquitto_pub are acknowledged, but neither routed nor retained', async () => {
    const status = topics.status(DEVICE_A);
    const publisher = mosquittoConnectArgs(broker.port, mosquittoIdentity('devices', DEVICE_A));
    const before = await scrape(broker);
    const service = await bridge();
    await subscribeGranted(service, [status]);
    const live = collectMessages(service);

    const valid = JSON.stringify({ online: true, at: new Date().toISOString() });
    const published = [valid, 'garbage', JSON.stringify({ online: false, at: '2099-01-01T00:00:00.000Z' })];
    for (const payload of published) {
      // mosquitto_pub exits 0 only after the PUBACK of its QoS 1 publish
      const result = await runMosquitto('mosquitto_pub', [...publisher, '-q', '1', '-r', '-t', status, '-m', payload]);
      expect(result, payload).toMatchObject({ code: 0 });
    }
    const marker = await statusBarrier(service, live, DEVICE_A);
    expect(live.map((message) => message.payload)).toEqual([valid, marker]);

    const observed = await runMosquitto('mosquitto_sub', [
      ...mosquittoConnectArgs(broker.port, mosquittoIdentity('observers', 'explorer')),
      '-q',
      '1',
      '-t',
      status,
      '-C',
      '1',
      '-W',
      '5',
    ]);
    // the marker of the barrier is not retained: the last retained status is the valid one
    expect(observed).toMatchObject({ code: 0, stdout: `${valid}\n` });

    const dropped = logged('publish dropped: payload refused', { clientId: DEVICE_A, topic: status });
    expect(dropped.map((line) => line.reason)).toEqual([
      expect.stringMatching(/^payload is not valid JSON/),
      expect.stringMatching(/^\/at 2099-01-01T00:00:00.000Z is more than 5 minutes ahead of the broker's clock/),
    ]);
    const after = await scrape(broker);
    expect(
      after('mqtt_broker_dropped_publishes_total{kind="status"}') -
        before('mqtt_broker_dropped_publishes_total{kind="status"}'),
    ).toBe(2);
  });

  it('a will with an invalid status is accepted at CONNECT and dropped when it fires', async () => {
    const service = await bridge();
    await subscribeGranted(service, [topics.status(DEVICE_B)]);
    const received = collectMessages(service);
    const deviceB = await device(DEVICE_B, {
      will: { topic: topics.status(DEVICE_B), payload: Buffer.from('{"online":"no"}'), qos: 1, retain: true },
    });
    deviceB.stream.destroy();
    await expect
      .poll(() => logged('publish dropped: payload refused', { clientId: DEVICE_B }), DELIVERY_POLL)
      .toHaveLength(1);
    const marker = await statusBarrier(service, received, DEVICE_B);
    expect(received.map((message) => message.payload)).toEqual([marker]);
  });
});
