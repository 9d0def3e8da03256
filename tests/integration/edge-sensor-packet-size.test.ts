/**
 * The edge's sensor listener bounds what one packet may cost: a packet whose fixed header
 * announces more than SENSOR_MAX_PACKET_BYTES closes the connection before its body is read
 * (G7), while a reading whose payload is merely over MAX_SENSOR_PAYLOAD_BYTES is read, refused
 * with a reason and acknowledged (G5). The listener runs in the test process, so its memory is
 * the test's.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../../common/ids.js';
import { SENSOR_MAX_PACKET_BYTES } from '../../edge/ingest/sensor-listener.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import { startTestListener, type TestListener } from '../helpers/edge-listener.js';
import { mosquittoPub, pahoPub } from '../helpers/third-party-mqtt.js';
import { nextEvent } from '../helpers/wait.js';

let edge: TestListener;

beforeEach(async () => {
  edge = await startTestListener();
});

afterEach(async () => {
  await edge.close();
});

/** MQTT's variable-length "remaining length" encoding. */
function remainingLength(length: number): Buffer {
  const bytes: number[] = [];
  let rest = length;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0);
  return Buffer.from(bytes);
}

function utf8Field(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

/** CONNECT, MQTT 3.1.1, clean session, keepalive 60 s. */
function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([utf8Field('MQTT'), Buffer.from([4, 0x02, 0, 60]), utf8Field(clientId)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

/** The fixed and variable header of a QoS 1 PUBLISH whose payload is `payloadBytes` long (not included). */
function publishHeader(topic: string, payloadBytes: number): Buffer {
  const variable = Buffer.concat([utf8Field(topic), Buffer.from([0, 1])]);
  return Buffer.concat([Buffer.from([0x32]), remainingLength(variable.length + payloadBytes), variable]);
}

/** A reading padded with spaces (valid JSON) to exactly `bytes`. */
function paddedReading(id: string, bytes: number): string {
  const reading = JSON.stringify({ value: 1, id });
  return reading + ' '.repeat(bytes - reading.length);
}

const TOPIC = 'sensors/t1/temperature';
/** 2 bytes of topic length, the topic, 2 bytes of packet id */
const PUBLISH_OVERHEAD = 2 + TOPIC.length + 2;

describe('sensor listener packet size', () => {
  it('closes a connection whose PUBLISH announces 30 MiB before reading it, and its memory does not grow by the payload', async () => {
    const payloadBytes = 30 * 1024 * 1024;
    const socket: Socket = connect(edge.listener.port, '127.0.0.1');
    socket.on('error', () => undefined); // writing into the closed connection fails: expected
    await nextEvent(socket, 'connect');
    socket.write(connectPacket('raw-sensor'));
    const [connack] = await nextEvent<[Buffer]>(socket, 'data');
    expect([...connack]).toEqual([0x20, 0x02, 0x00, 0x00]);

    let closed = false;
    const closing = nextEvent(socket, 'close', 60_000).then(() => (closed = true));
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 2);

    // stream the payload with backpressure, counting what the kernel took, until the connection closes
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let flushed = 0;
    socket.write(publishHeader(TOPIC, payloadBytes));
    for (let sent = 0; sent < payloadBytes && !closed; sent += chunk.length) {
      const accepted = socket.write(chunk, (error) => {
        if (!error) flushed += chunk.length;
      });
      if (!accepted) await Promise.race([nextEvent(socket, 'drain', 60_000), closing]);
    }
    // before the fix the whole packet was read and answered with a PUBACK; the connection stayed
    const answered = await Promise.race([closing.then(() => 'closed'), nextEvent(socket, 'data', 60_000)]);
    clearInterval(sampler);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);

    const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
    console.info(
      `30 MiB PUBLISH: ${answered === 'closed' ? 'connection closed' : 'answered'} after ${mib(flushed)} MiB ` +
        `left the client; RSS peak +${mib(rssPeak - rssBefore)} MiB`,
    );
    expect(answered).toBe('closed');
    // the kernel's socket buffers take a few MiB whatever the server does; the rest was never sent
    expect(flushed).toBeLessThan(payloadBytes / 2);
    // reading the packet would cost at least its size (before the fix: +57 MB)
    expect(rssPeak - rssBefore).toBeLessThan(payloadBytes / 2);
    expect(await edge.metrics.oversizePackets.get()).toMatchObject({ values: [{ value: 1 }] });
    expect(await edge.rejected()).toEqual([]);
    socket.destroy();
  });

  it('refuses a reading one byte over MAX_SENSOR_PAYLOAD_BYTES with a reason and a PUBACK, and stores one at the limit', async () => {
    const port = edge.listener.port;
    const atLimit = newId();
    const overLimit = newId();
    const stored = await mosquittoPub({
      port,
      topic: TOPIC,
      payload: paddedReading(atLimit, MAX_SENSOR_PAYLOAD_BYTES),
    });
    const refused = await mosquittoPub({
      port,
      topic: TOPIC,
      payload: paddedReading(overLimit, MAX_SENSOR_PAYLOAD_BYTES + 1),
    });
    expect([stored.code, refused.code]).toEqual([0, 0]); // both acknowledged: the sensor does not re-send

    expect(await edge.storedIds()).toEqual([atLimit]);
    expect((await edge.rejected()).map((row) => row.reason)).toEqual([
      `payload is ${MAX_SENSOR_PAYLOAD_BYTES + 1} bytes; a sensor reading may be at most ${MAX_SENSOR_PAYLOAD_BYTES} bytes`,
    ]);
  });

  it('reads a packet of exactly SENSOR_MAX_PACKET_BYTES, and closes the connection of one a byte longer without a PUBACK', async () => {
    const port = edge.listener.port;
    const payloadAtLimit = SENSOR_MAX_PACKET_BYTES - PUBLISH_OVERHEAD;
    const atLimit = await pahoPub({
      port,
      messages: [{ topic: TOPIC, payload: '{"value": 1}', padTo: payloadAtLimit }],
    });
    expect(atLimit).toMatchObject({ code: 0, acknowledged: [0] });
    // read whole, then refused by the payload limit: recorded, acknowledged
    expect((await edge.rejected()).map((row) => row.reason)).toEqual([
      `payload is ${payloadAtLimit} bytes; a sensor reading may be at most ${MAX_SENSOR_PAYLOAD_BYTES} bytes`,
    ]);

    const overLimit = await pahoPub({
      port,
      messages: [{ topic: TOPIC, payload: '{"value": 1}', padTo: payloadAtLimit + 1 }],
    });
    expect(overLimit).toMatchObject({ code: 3, acknowledged: [] });
    expect(overLimit.events).toContainEqual(expect.objectContaining({ event: 'disconnect' }));
    expect(await edge.rejected()).toHaveLength(1); // never assembled, so never recorded
    expect(await edge.metrics.oversizePackets.get()).toMatchObject({ values: [{ value: 1 }] });
  });
});
