/**
 * What the edge's sensor listener routes to local subscribers, seen by third-party clients
 * (mosquitto_pub/mosquitto_sub and paho-mqtt): rejected input is acknowledged but never delivered
 * nor retained; valid readings and the edge's own error notices are delivered.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../../common/ids.js';
import type { SensorReadingError } from '../../schemas/messages.js';
import { startTestListener, type TestListener } from '../helpers/edge-listener.js';
import {
  mosquittoPub,
  mosquittoSub,
  pahoPub,
  pahoSub,
  type ReceivedByClient,
  type RunningSubscriber,
} from '../helpers/third-party-mqtt.js';

let edge: TestListener;
const subscribers: RunningSubscriber[] = [];

beforeEach(async () => {
  edge = await startTestListener();
});

afterEach(async () => {
  await Promise.all(subscribers.splice(0).map((subscriber) => subscriber.stop()));
  await edge.close();
});

function track(subscriber: RunningSubscriber): RunningSubscriber {
  subscribers.push(subscriber);
  return subscriber;
}

const SPOOFED_NOTICE = JSON.stringify({ error: 'spoofed by a sensor', topic: 'sensors/t1/temperature', at: 'x' });
const INVALID_JSON = '{"value": 21.5,';

describe('sensor listener routing', () => {
  it('acknowledges a spoofed error notice, a too-deep topic and an invalid reading, and delivers none of them', async () => {
    const port = edge.listener.port;
    const watchers = [
      track(mosquittoSub({ port, filter: 'sensors/#' })),
      track(pahoSub({ port, filters: ['sensors/#'] })),
    ];
    const everything = track(pahoSub({ port, filters: ['#'] }));
    for (const watcher of watchers) expect(await watcher.subscribed()).toEqual([1]);
    expect(await everything.subscribed()).toEqual([128]); // only sensors/… filters are granted

    // each mosquitto_pub exits 0 only after its PUBACK: the sensor is not left re-sending
    const spoof = await mosquittoPub({ port, topic: 'sensors/t1/temperature/error', payload: SPOOFED_NOTICE });
    const deep = await mosquittoPub({ port, topic: 'sensors/a/b/c/d', payload: '{"value": 1}' });
    const invalid = await mosquittoPub({ port, topic: 'sensors/t1/temperature', payload: INVALID_JSON, retain: true });
    expect([spoof.code, deep.code, invalid.code]).toEqual([0, 0, 0]);
    const goodId = newId();
    const good = await pahoPub({ port, messages: [{ topic: 'sensors/t1/temperature', payload: reading(goodId) }] });
    expect(good.acknowledged).toEqual([0]);

    for (const watcher of watchers) {
      // the edge's own notice about the invalid reading, and the valid reading published after it
      const notice = await watcher.received('the edge notice', (m) => m.topic === 'sensors/t1/temperature/error');
      expect(JSON.parse(notice.payload) as SensorReadingError).toMatchObject({
        topic: 'sensors/t1/temperature',
        payload: INVALID_JSON,
        error: expect.stringMatching(/^payload is not valid JSON/),
      });
      await watcher.received('the valid reading', (m) => m.payload.includes(goodId));
      expect(watcher.messages.map(summary)).toEqual([
        { topic: 'sensors/t1/temperature/error', retain: false, edgeNotice: true },
        { topic: 'sensors/t1/temperature', retain: false, edgeNotice: false },
      ]);
    }
    expect(everything.messages).toEqual([]);

    expect((await edge.rejected()).map((row) => row.topic)).toEqual([
      'sensors/t1/temperature/error',
      'sensors/a/b/c/d',
      'sensors/t1/temperature',
    ]);
    expect(await edge.storedIds()).toEqual([goodId]);
  });

  it('retains no rejected publish for a later subscriber', async () => {
    const port = edge.listener.port;
    for (const [topic, payload] of [
      ['sensors/t1/temperature', INVALID_JSON],
      ['sensors/t1/temperature/error', SPOOFED_NOTICE],
      ['sensors/a/b/c/d', '{"value": 1}'],
    ] as const) {
      expect((await mosquittoPub({ port, topic, payload, retain: true })).code).toBe(0);
    }
    expect(await edge.rejected()).toHaveLength(3);

    const later = [
      track(mosquittoSub({ port, filter: 'sensors/#' })),
      track(pahoSub({ port, filters: ['sensors/#'] })),
    ];
    for (const subscriber of later) expect(await subscriber.subscribed()).toEqual([1]);
    // retained messages come right after the SUBACK, so anything retained arrives before this reading
    const barrierId = newId();
    expect((await mosquittoPub({ port, topic: 'sensors/t2/humidity', payload: reading(barrierId) })).code).toBe(0);
    for (const subscriber of later) {
      await subscriber.received('the reading published after subscribing', (m) => m.payload.includes(barrierId));
      expect(subscriber.messages.map(summary)).toEqual([
        { topic: 'sensors/t2/humidity', retain: false, edgeNotice: false },
      ]);
    }
  });

  it('still retains a valid reading a sensor publishes with the retain flag', async () => {
    const port = edge.listener.port;
    const id = newId();
    expect((await mosquittoPub({ port, topic: 'sensors/t3/level', payload: reading(id), retain: true })).code).toBe(0);
    const later = track(pahoSub({ port, filters: ['sensors/#'] }));
    expect(await later.subscribed()).toEqual([1]);
    const retained = await later.received('the retained reading', (m) => m.payload.includes(id));
    expect(retained).toMatchObject({ topic: 'sensors/t3/level', retain: true });
  });
});

function reading(id: string): string {
  return JSON.stringify({ value: 21.5, unit: 'C', id });
}

function summary(message: ReceivedByClient): { topic: string; retain: boolean; edgeNotice: boolean } {
  let edgeNotice = false;
  try {
    const parsed = JSON.parse(message.payload) as Partial<SensorReadingError>;
    edgeNotice = message.topic.endsWith('/error') && typeof parsed.error === 'string' && parsed.at !== 'x';
  } catch {
    edgeNotice = false;
  }
  return { topic: message.topic, retain: message.retain, edgeNotice };
}
