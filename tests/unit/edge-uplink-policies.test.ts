import type { SecureContext } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { syncLogEntryForAck, syncLogStatusForAck } from '../../edge/store/ack-outcome.js';
import { buildUplinkClientOptions } from '../../edge/uplink/mqtt-options.js';
import { ReconnectScheduler } from '../../edge/uplink/reconnect-scheduler.js';
import { Store } from 'mqtt';
import { TEST_DEVICE_ID } from '../helpers/records.js';

const ack = (rejectedCount: number) => ({
  batchId: 'b',
  accepted: 10 - rejectedCount,
  rejected: Array.from({ length: rejectedCount }, (_, index) => ({ id: `id-${index}`, reason: `reason ${index}` })),
  conflicts: 0,
});

describe('sync log entry for an ack', () => {
  it('is success without rejections, partial with some, failed when all were rejected', () => {
    expect(syncLogStatusForAck(ack(0), { synced: 10, failed: 0 })).toBe('success');
    expect(syncLogStatusForAck(ack(2), { synced: 8, failed: 2 })).toBe('partial');
    expect(syncLogStatusForAck(ack(10), { synced: 0, failed: 10 })).toBe('failed');
  });

  it('lists the first rejections and counts the rest', () => {
    const entry = syncLogEntryForAck(ack(7), { synced: 3, failed: 7 }, 100, 250);
    expect(entry).toEqual({
      syncType: 'upstream',
      startedAt: 100,
      completedAt: 250,
      recordsCount: 10,
      status: 'partial',
      errorMessage:
        '7 rejected by the bridge: id-0: reason 0; id-1: reason 1; id-2: reason 2; id-3: reason 3; id-4: reason 4; … and 2 more',
    });
    expect(syncLogEntryForAck(ack(0), { synced: 10, failed: 0 }, 1, 2).errorMessage).toBeNull();
  });
});

describe('ReconnectScheduler', () => {
  const policy = { initialDelayMs: 10, maxDelayMs: 80, multiplier: 2, jitter: 'none' as const };

  it('backs off exponentially, resets after a connection, and waits the auth window after an auth failure', () => {
    const scheduler = new ReconnectScheduler({ ...policy, authFailureDelayMs: 1000 }, () => 0.5);
    const noop = () => undefined;
    expect([1, 2, 3, 4, 5].map(() => scheduler.schedule('network', noop).delayMs)).toEqual([10, 20, 40, 80, 80]);
    scheduler.connected();
    expect(scheduler.schedule('network', noop)).toEqual({
      delayMs: 10,
      failures: 1,
      windowMs: 10,
      errorClass: 'network',
    });
    expect(scheduler.schedule('auth', noop)).toEqual({ delayMs: 750, failures: 2, windowMs: 1000, errorClass: 'auth' });
    scheduler.cancel();
  });

  it('runs only the latest scheduled attempt', async () => {
    const scheduler = new ReconnectScheduler(policy);
    const attempts: string[] = [];
    scheduler.schedule('network', () => attempts.push('first'));
    await new Promise<void>((resolve) =>
      scheduler.schedule('network', () => {
        attempts.push('second');
        resolve();
      }),
    );
    expect(attempts).toEqual(['second']);
  });
});

describe('uplink client options', () => {
  it('use MQTT 3.1.1, the device id, a persistent session, a retained QoS 1 will, no automatic reconnect and no Nagle delay', () => {
    const at = new Date('2025-01-01T00:00:00.000Z');
    const options = buildUplinkClientOptions(
      {
        deviceId: TEST_DEVICE_ID,
        connectTimeoutMs: 1000,
        keepaliveSeconds: 30,
        incomingStore: new Store(),
        outgoingStore: new Store(),
      },
      at,
    );
    expect(options).toMatchObject({ clientId: TEST_DEVICE_ID, protocolVersion: 4, clean: false, reconnectPeriod: 0 });
    // handed by mqtt.js to tls.connect: small packets are not held for the peer's delayed ACK (common/no-delay.ts)
    expect(options).toMatchObject({ noDelay: true });
    expect(options.will).toMatchObject({ topic: `devices/${TEST_DEVICE_ID}/status`, qos: 1, retain: true });
    expect(JSON.parse(String(options.will?.payload))).toEqual({ online: false, at: '2025-01-01T00:00:00.000Z' });
    expect(options.cert).toBeUndefined();

    const tls = { ca: Buffer.from('ca'), cert: Buffer.from('cert'), key: Buffer.from('key') };
    const secure = buildUplinkClientOptions(
      {
        deviceId: TEST_DEVICE_ID,
        tls,
        connectTimeoutMs: 1000,
        keepaliveSeconds: 30,
        incomingStore: new Store(),
        outgoingStore: new Store(),
      },
      at,
    );
    expect(secure).toMatchObject({ ...tls, rejectUnauthorized: true });
    const secureContext = { context: {} } as unknown as SecureContext;
    // mqtt.js types only some of the tls.connect options it passes on
    const withContext = buildUplinkClientOptions(
      {
        deviceId: TEST_DEVICE_ID,
        tls,
        secureContext,
        connectTimeoutMs: 1000,
        keepaliveSeconds: 30,
        incomingStore: new Store(),
        outgoingStore: new Store(),
      },
      at,
    );
    expect((withContext as { secureContext?: unknown }).secureContext).toBe(secureContext);
  });
});
