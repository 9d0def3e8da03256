/**
 * The broker's publish throttle (broker/publish-throttle.ts) without a broker: fake aedes clients
 * (an id and a connection that can close) and an injected clock. What is pinned here is that the
 * limits belong to the identity, not the connection (G7): a device that reconnects, or is
 * disconnected for flooding and comes straight back, resumes its buckets where they were instead
 * of getting a fresh burst, and an identity without connections is forgotten once rested.
 */
import { EventEmitter } from 'node:events';
import type { Client, PublishPacket } from 'aedes';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createBrokerMetrics } from '../../broker/metrics.js';
import type { PublishRateLimits } from '../../broker/publish-rate-limit.js';
import { createPublishThrottle, SWEEP_INTERVAL_MS } from '../../broker/publish-throttle.js';
import { capturedLogger } from '../helpers/logger.js';

const LIMITS: PublishRateLimits = {
  messages: { perSecond: 1000, burst: 1000 },
  bytes: { perSecond: 1000, burst: 4000 },
  maxThrottledMs: 5_000,
};

interface FakeClient {
  client: Client;
  closeConnection(): void;
  closedByBroker(): boolean;
}

function fakeClient(id: string): FakeClient {
  const conn = new EventEmitter();
  let closed = false;
  const client = {
    id,
    conn,
    close: () => {
      closed = true;
      conn.emit('close');
    },
  } as unknown as Client;
  return { client, closeConnection: () => conn.emit('close'), closedByBroker: () => closed };
}

function packet(bytes: number): PublishPacket {
  return {
    cmd: 'publish',
    topic: 't',
    payload: Buffer.alloc(bytes),
    qos: 1,
    dup: false,
    retain: false,
  } as PublishPacket;
}

function setup() {
  let clock = 0;
  const log = capturedLogger();
  const metrics = createBrokerMetrics(new Registry(), {
    connectedClients: () => 0,
    throttledClients: () => 0,
    revokedCertificates: () => 0,
    revocationListGeneratedAt: () => undefined,
  });
  const throttle = createPublishThrottle({
    limits: LIMITS,
    logger: log.logger,
    metrics,
    roleOf: () => 'device',
    now: () => clock,
  });
  /** Publishes `bytes`; resolves to whether the publish was authorized at once. */
  const publish = (fake: FakeClient, bytes: number) => {
    let passed = false;
    throttle.authorize(fake.client, packet(bytes), () => (passed = true));
    return passed;
  };
  return { throttle, publish, log, advance: (ms: number) => (clock += ms) };
}

describe("the publish throttle keeps a device's limits across its connections", () => {
  it('gives a device that reconnects no fresh burst: its first publish on the new connection waits', () => {
    const { publish } = setup();
    const first = fakeClient('device-a');
    expect(publish(first, 4000)).toBe(true); // the whole burst
    first.closeConnection();
    const second = fakeClient('device-a');
    expect(publish(second, 1000)).toBe(false);
  });

  it('does not charge a device for publishes its closed connection held back and dropped', () => {
    const { publish, advance } = setup();
    const first = fakeClient('device-b');
    expect(publish(first, 4000)).toBe(true);
    expect(publish(first, 3000)).toBe(false); // held back, then dropped with the connection
    first.closeConnection();
    advance(1000); // 1000 bytes refilled since the 4000 that passed
    const second = fakeClient('device-b');
    expect(publish(second, 1000)).toBe(true);
  });

  it('gives a device disconnected for staying over its limit no fresh burst when it comes back at once', () => {
    const { publish, log } = setup();
    const flooder = fakeClient('flooder');
    expect(publish(flooder, 4000)).toBe(true);
    for (let i = 0; i < 10 && !flooder.closedByBroker(); i++) publish(flooder, 1000);
    expect(flooder.closedByBroker()).toBe(true);
    expect(log.logged('publish rate over the limit for too long: disconnecting the client')).toHaveLength(1);
    const back = fakeClient('flooder');
    expect(publish(back, 1000)).toBe(false);
  });

  it("keeps one device's reconnects from touching another device's limits", () => {
    const { publish } = setup();
    const a = fakeClient('device-c');
    publish(a, 4000);
    a.closeConnection();
    expect(publish(fakeClient('device-d'), 4000)).toBe(true);
  });

  it('forgets an identity without connections once its buckets are full again, and no sooner', () => {
    const { throttle, publish, advance } = setup();
    const gone = fakeClient('device-e');
    publish(gone, 4000);
    gone.closeConnection();
    const still = fakeClient('device-f');
    publish(still, 1);
    expect(throttle.trackedIdentities()).toBe(2);

    advance(SWEEP_INTERVAL_MS); // device-e rested (4000 bytes at 1000/s take 4 s); device-f still connected
    publish(fakeClient('device-g'), 1); // a new connection's first publish sweeps
    expect(throttle.trackedIdentities()).toBe(2); // device-f and device-g

    const busy = fakeClient('device-h');
    publish(busy, 4000);
    busy.closeConnection();
    advance(SWEEP_INTERVAL_MS - 1);
    publish(fakeClient('device-i'), 1); // not yet time to sweep
    expect(throttle.trackedIdentities()).toBe(4);
  });

  it('keeps a disconnected identity whose buckets are not full again when a sweep runs, so it gets no fresh burst', () => {
    const { throttle, publish, advance } = setup();
    publish(fakeClient('device-l'), 1); // t = 0: no sweep yet
    advance(SWEEP_INTERVAL_MS - 2000);
    const gone = fakeClient('device-k');
    expect(publish(gone, 4000)).toBe(true); // its whole burst
    gone.closeConnection();
    advance(2000); // 2000 of 4000 bytes refilled
    publish(fakeClient('device-n'), 1); // sweeps
    expect(throttle.trackedIdentities()).toBe(3);
    expect(publish(fakeClient('device-k'), 4000)).toBe(false);
  });

  it('counts a connection the broker closed for flooding once: the identity reconnected is never swept while connected', () => {
    const { throttle, publish, advance } = setup();
    const flooder = fakeClient('device-o');
    publish(flooder, 4000);
    for (let i = 0; i < 10 && !flooder.closedByBroker(); i++) publish(flooder, 1000);
    expect(flooder.closedByBroker()).toBe(true); // its connection's 'close' fired after the throttle forgot it
    const back = fakeClient('device-o');
    publish(back, 1);
    advance(SWEEP_INTERVAL_MS + 10_000); // rested, but connected
    publish(fakeClient('device-p'), 1); // sweeps
    expect(throttle.trackedIdentities()).toBe(2);
  });

  it('gives back the publish that got a device disconnected, which is not routed either', () => {
    const { publish, advance } = setup();
    const flooder = fakeClient('device-q');
    expect(publish(flooder, 4000)).toBe(true);
    publish(flooder, 6000); // would wait 6 s > maxThrottledMs 5 s: disconnected at once, not routed
    expect(flooder.closedByBroker()).toBe(true);
    advance(1000);
    expect(publish(fakeClient('device-q'), 1000)).toBe(true); // 1 s refilled since the 4000 that passed
  });

  it('shares one set of buckets between two connections of the same identity (a session takeover)', () => {
    const { publish } = setup();
    const old = fakeClient('device-j');
    const taking = fakeClient('device-j');
    expect(publish(old, 3000)).toBe(true);
    expect(publish(taking, 3000)).toBe(false);
  });
});
