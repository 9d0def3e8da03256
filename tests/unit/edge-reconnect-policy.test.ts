/**
 * The edge's reconnect policy (DEFAULT_RECONNECT_POLICY, edge/uplink/reconnect-scheduler.ts) with
 * injected randomness: full jitter over a window that grows with the failures in a row, a ceiling
 * that bounds the wait after any outage, and a separate delay after an authentication failure.
 */
import { describe, expect, it } from 'vitest';
import { backoffCeiling, reconnectDelay } from '../../common/retry-policy.js';
import {
  DEFAULT_RECONNECT_POLICY,
  PREVIOUS_RECONNECT_POLICY,
  ReconnectScheduler,
} from '../../edge/uplink/reconnect-scheduler.js';

const policy = DEFAULT_RECONNECT_POLICY;

/** A deterministic stand-in for Math.random: an evenly spread sequence in [0, 1). */
function evenlySpread(count: number): () => number {
  let index = 0;
  return () => ((index++ % count) + 0.5) / count;
}

describe('DEFAULT_RECONNECT_POLICY', () => {
  it('uses full jitter: a delay anywhere from 0 to the window, the ends included', () => {
    expect(reconnectDelay(policy, 1, 'network', () => 0)).toBe(0);
    expect(reconnectDelay(policy, 1, 'network', () => 0.999_999_9)).toBe(5_000);
    expect(reconnectDelay(policy, 2, 'network', () => 0.999_999_9)).toBe(10_000);
  });

  it('spreads the first retry after a broker loss evenly over 5 s, not within one second', () => {
    const random = evenlySpread(1000);
    const delays = Array.from({ length: 1000 }, () => reconnectDelay(policy, 1, 'network', random));
    const perSecond = [0, 1, 2, 3, 4].map(
      (second) => delays.filter((delay) => delay >= second * 1000 && delay < (second + 1) * 1000).length,
    );
    expect(perSecond).toEqual([200, 200, 200, 200, 200]);
    expect(Math.max(...delays)).toBeLessThanOrEqual(5_000);
  });

  it('doubles the window with each failure in a row, up to a 15 s ceiling', () => {
    expect([1, 2, 3, 4, 10, 100].map((failures) => backoffCeiling(policy, failures))).toEqual([
      5_000, 10_000, 15_000, 15_000, 15_000, 15_000,
    ]);
    for (const failures of [1, 2, 3, 50]) {
      for (const r of [0, 0.25, 0.5, 0.75, 0.999_999]) {
        const delay = reconnectDelay(policy, failures, 'network', () => r);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(backoffCeiling(policy, failures));
      }
    }
  });

  it('bounds the wait after an outage of any length by the ceiling: a blip costs seconds, not a minute', () => {
    // after 200 failures in a row (a long outage), the next attempt is still at most 15 s away
    const scheduler = new ReconnectScheduler(policy, () => 0.999_999);
    let last = 0;
    for (let failure = 0; failure < 200; failure++) {
      const scheduled = scheduler.schedule('network', () => undefined);
      last = scheduled.delayMs;
      expect(scheduled.windowMs).toBeLessThanOrEqual(15_000);
    }
    scheduler.cancel();
    expect(last).toBe(15_000);
    // the previous policy: 30–60 s at its ceiling
    expect(reconnectDelay(PREVIOUS_RECONNECT_POLICY, 200, 'network', () => 0)).toBe(30_000);
  });

  it('waits 30–60 s after an authentication failure, jittered, whatever the failure count', () => {
    expect(reconnectDelay(policy, 1, 'auth', () => 0)).toBe(30_000);
    expect(reconnectDelay(policy, 1, 'auth', () => 0.999_999_9)).toBe(60_000);
    expect(reconnectDelay(policy, 7, 'auth', () => 0.5)).toBe(45_000);
  });

  it('starts from the first window again after a connection', () => {
    const scheduler = new ReconnectScheduler(policy, () => 0.999_999_9);
    const noop = () => undefined;
    expect([1, 2, 3].map(() => scheduler.schedule('network', noop).windowMs)).toEqual([5_000, 10_000, 15_000]);
    scheduler.connected();
    expect(scheduler.schedule('network', noop)).toEqual({
      delayMs: 5_000,
      failures: 1,
      windowMs: 5_000,
      errorClass: 'network',
    });
    scheduler.cancel();
  });

  it('the previous policy put every first retry within half a second (why storms collapsed)', () => {
    const random = evenlySpread(1000);
    const delays = Array.from({ length: 1000 }, () => reconnectDelay(PREVIOUS_RECONNECT_POLICY, 1, 'network', random));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(500);
    expect(Math.max(...delays)).toBeLessThanOrEqual(1_000);
  });
});
