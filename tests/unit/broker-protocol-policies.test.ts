import { describe, expect, it } from 'vitest';
import type { Client } from 'aedes';
import { serverKeepaliveSeconds } from '../../broker/keepalive-policy.js';
import { decidePublishContent } from '../../broker/publish-content.js';
import { storeOnlyGrantedSubscriptions, type StoredSubscription } from '../../broker/session-subscriptions.js';
import { MAX_STATUS_FUTURE_SKEW_MS } from '../../schemas/limits.js';
import { topics } from '../../schemas/topics.js';
import { checkDeviceStatusPayload } from '../../schemas/validators.js';

const DEVICE = '3b0f6c1e-8d2a-4f7b-9c5e-2a1d0e9f8b7c';
const NOW = Date.parse('2026-03-01T12:00:00.000Z');

describe('serverKeepaliveSeconds', () => {
  it('keeps a keepalive within the limit', () => {
    expect(serverKeepaliveSeconds(30, 600)).toBe(30);
    expect(serverKeepaliveSeconds(600, 600)).toBe(600);
  });

  it('gives the limit to a client that asked for none (0) or for more, instead of a refusal', () => {
    expect(serverKeepaliveSeconds(0, 600)).toBe(600);
    expect(serverKeepaliveSeconds(601, 600)).toBe(600);
    expect(serverKeepaliveSeconds(65_535, 600)).toBe(600);
    expect(serverKeepaliveSeconds(undefined, 600)).toBe(600);
  });
});

describe('checkDeviceStatusPayload', () => {
  const status = (online: boolean, at: string) => JSON.stringify({ online, at });

  it('accepts a status whose at is in the past or up to 5 minutes ahead of the clock', () => {
    expect(checkDeviceStatusPayload(status(true, '2026-03-01T11:59:00.000Z'), NOW)).toEqual({
      ok: true,
      value: { online: true, at: '2026-03-01T11:59:00.000Z' },
    });
    expect(checkDeviceStatusPayload(status(false, '1970-01-01T00:00:05.000Z'), NOW).ok).toBe(true);
    const edge = new Date(NOW + MAX_STATUS_FUTURE_SKEW_MS).toISOString();
    expect(checkDeviceStatusPayload(Buffer.from(status(false, edge)), NOW).ok).toBe(true);
  });

  it('refuses a status from further in the future, saying by how much it may be ahead', () => {
    const ahead = new Date(NOW + MAX_STATUS_FUTURE_SKEW_MS + 1).toISOString();
    expect(checkDeviceStatusPayload(status(true, ahead), NOW)).toEqual({
      ok: false,
      reason: `/at ${ahead} is more than 5 minutes ahead of the broker's clock (2026-03-01T12:00:00.000Z)`,
    });
  });

  it('refuses what is not a status: not JSON, empty, wrong types, extra fields, a date without time zone', () => {
    expect(checkDeviceStatusPayload('garbage', NOW)).toMatchObject({ ok: false, reason: /^payload is not valid JSON/ });
    expect(checkDeviceStatusPayload('', NOW).ok).toBe(false);
    expect(checkDeviceStatusPayload('{"online":"yes","at":"2026-03-01T11:00:00Z"}', NOW)).toEqual({
      ok: false,
      reason: '/online must be boolean',
    });
    expect(checkDeviceStatusPayload('{"online":true}', NOW)).toEqual({
      ok: false,
      reason: "(root) must have required property 'at'",
    });
    expect(checkDeviceStatusPayload('{"online":true,"at":"2026-03-01T11:00:00Z","x":1}', NOW).ok).toBe(false);
    expect(checkDeviceStatusPayload('{"online":true,"at":"2026-03-01T11:00:00"}', NOW).ok).toBe(false);
  });
});

describe('decidePublishContent', () => {
  it('checks status payloads, of any device', () => {
    expect(decidePublishContent(topics.status(DEVICE), 'garbage', NOW)).toMatchObject({
      accepted: false,
      kind: 'status',
    });
    expect(
      decidePublishContent(topics.status(DEVICE), JSON.stringify({ online: true, at: '2026-03-01T12:00:00Z' }), NOW),
    ).toEqual({ accepted: true });
  });

  it('leaves telemetry and the other topics to their consumers', () => {
    expect(decidePublishContent(topics.telemetry(DEVICE), 'garbage', NOW)).toEqual({ accepted: true });
    expect(decidePublishContent(topics.configReported(DEVICE), 'garbage', NOW)).toEqual({ accepted: true });
    expect(decidePublishContent(`${topics.status(DEVICE)}/extra`, 'garbage', NOW)).toEqual({ accepted: true });
  });
});

describe('storeOnlyGrantedSubscriptions', () => {
  const client = { id: DEVICE } as unknown as Client;
  function store() {
    const calls: Array<{ subscriptions: StoredSubscription[]; extra: unknown[] }> = [];
    const persistence = {
      addSubscriptions(_client: Client, subscriptions: StoredSubscription[], ...extra: unknown[]) {
        calls.push({ subscriptions, extra });
        return Promise.resolve('stored');
      },
    };
    return { persistence, calls };
  }
  const grantOwn = (_client: Client, subscription: StoredSubscription) =>
    subscription.topic.startsWith(`devices/${DEVICE}/`) ? 1 : null;

  it('passes on only the granted subscriptions, with the granted QoS and their other options', async () => {
    const { persistence, calls } = store();
    expect(storeOnlyGrantedSubscriptions(persistence, grantOwn)).toBe(true);
    await expect(
      persistence.addSubscriptions(client, [
        { topic: topics.syncAck(DEVICE), qos: 0, rap: false },
        { topic: 'devices/+/telemetry', qos: 1 },
      ]),
    ).resolves.toBe('stored');
    expect(calls).toEqual([{ subscriptions: [{ topic: topics.syncAck(DEVICE), qos: 1, rap: false }], extra: [] }]);
  });

  it('stores nothing when nothing was granted, and still answers (promise or callback)', async () => {
    const { persistence, calls } = store();
    storeOnlyGrantedSubscriptions(persistence, grantOwn);
    await expect(persistence.addSubscriptions(client, [{ topic: '#', qos: 1 }])).resolves.toBeUndefined();
    const answered = await new Promise<unknown>((resolve) =>
      (persistence.addSubscriptions as (...args: unknown[]) => unknown)(client, [{ topic: '#', qos: 1 }], resolve),
    );
    expect(answered).toBeNull();
    expect(calls).toEqual([]);
  });

  it('refuses something that is not a persistence', () => {
    expect(storeOnlyGrantedSubscriptions({}, grantOwn)).toBe(false);
    expect(storeOnlyGrantedSubscriptions(undefined, grantOwn)).toBe(false);
  });
});
