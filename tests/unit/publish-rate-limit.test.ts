import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PUBLISH_RATE_LIMITS,
  episodeRates,
  PublishRateLimiter,
  TokenBucket,
  type PublishRateLimits,
} from '../../broker/publish-rate-limit.js';
import { MAX_BATCH_BYTES, MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';

describe('TokenBucket', () => {
  it('lets a burst through at once, then makes each reservation wait for the debt to be refilled', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, 0);
    expect([bucket.reserve(0, 1), bucket.reserve(0, 1), bucket.reserve(0, 1)]).toEqual([0, 0, 0]);
    expect(bucket.reserve(0, 1)).toBe(100);
    expect(bucket.reserve(0, 1)).toBe(200);
    // 150 ms later 1.5 tokens came back: the debt is 0.5
    expect(bucket.reserve(150, 0)).toBe(50);
  });

  it('refills at its rate up to the burst, never beyond', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, 0);
    bucket.reserve(0, 3);
    expect(bucket.tokens(100)).toBeCloseTo(1);
    expect(bucket.tokens(60_000)).toBe(3);
  });

  it('takes a reservation larger than the burst, with a wait for the part beyond it', () => {
    const bucket = new TokenBucket({ perSecond: 1000, burst: 500 }, 0);
    expect(bucket.reserve(0, 1500)).toBe(1000);
  });

  it('does not refill when the clock goes backwards', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, 1_000);
    bucket.reserve(1_000, 3);
    expect(bucket.tokens(500)).toBe(0);
  });
});

/** 10 messages/s, 2 at once; 1000 bytes/s, 1000 at once */
const limits: PublishRateLimits = {
  messages: { perSecond: 10, burst: 2 },
  bytes: { perSecond: 1000, burst: 1000 },
  maxThrottledMs: 1_000,
};

describe('PublishRateLimiter', () => {
  it('never holds back a client that publishes exactly at its rate', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    for (let t = 0; t < 10_000; t += 100) expect(limiter.decide(t, 100)).toEqual({ action: 'pass' });
  });

  it('passes publishes within the limits', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    expect(limiter.decide(0, 100)).toEqual({ action: 'pass' });
    expect(limiter.decide(0, 100)).toEqual({ action: 'pass' });
    expect(limiter.throttled).toBe(false);
  });

  it('delays by the larger of the two waits and marks the first delay of an episode', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    limiter.decide(0, 0);
    limiter.decide(0, 0);
    expect(limiter.decide(0, 0)).toEqual({ action: 'delay', delayMs: 100, started: true });
    // messages: 200 ms of debt; bytes: 1500 over the burst of 1000 → 500 ms
    expect(limiter.decide(0, 1500)).toEqual({ action: 'delay', delayMs: 500, started: false });
    expect(limiter.throttled).toBe(true);
  });

  it('ends an episode when a publish passes at once again', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    for (let i = 0; i < 3; i++) limiter.decide(0, 0);
    expect(limiter.throttled).toBe(true);
    expect(limiter.decide(5_000, 0)).toEqual({ action: 'pass' });
    expect(limiter.throttled).toBe(false);
    limiter.decide(5_000, 0);
    expect(limiter.decide(5_000, 0)).toMatchObject({ action: 'delay', started: true });
  });

  it('disconnects a client whose publish would be released more than maxThrottledMs after its first wait', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    const decisions = [];
    // a client offering twice its rate: one publish every 50 ms at 10 messages/s
    for (let t = 0; t <= 5_000; t += 50) {
      const decision = limiter.decide(t, 0);
      decisions.push(decision.action);
      if (decision.action === 'disconnect') {
        expect(decision.episode.sinceMs).toBeLessThanOrEqual(t);
        break;
      }
    }
    expect(decisions.at(-1)).toBe('disconnect');
    expect(decisions).toContain('delay');
  });

  it('disconnects at once when one burst owes more than maxThrottledMs', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    const actions = Array.from({ length: 14 }, () => limiter.decide(0, 0).action);
    // 2 pass, then 100 ms more wait each: the 13th would wait 1100 ms
    expect(actions.slice(0, 2)).toEqual(['pass', 'pass']);
    expect(actions.slice(2, 12)).toEqual(Array(10).fill('delay'));
    expect(actions[12]).toBe('disconnect');
  });

  it('counts what an episode carried, for the rates in the log', () => {
    const disconnect = new PublishRateLimiter({ ...limits, maxThrottledMs: 1 }, 0);
    disconnect.decide(0, 0);
    disconnect.decide(0, 0);
    disconnect.decide(0, 500);
    const last = disconnect.decide(0, 500);
    expect(last).toMatchObject({ action: 'disconnect', episode: { sinceMs: 0, messages: 2, bytes: 1000 } });
    if (last.action === 'disconnect') {
      expect(episodeRates(last.episode, 2_000)).toEqual({ messagesPerSecond: 1, bytesPerSecond: 500 });
    }
  });
});

describe('PublishRateLimiter across connections', () => {
  it('keeps what passed publishes spent when a connection closes: the next one gets no fresh burst', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    limiter.decide(0, 1000);
    limiter.connectionClosed(0, 0, 0);
    expect(limiter.decide(0, 500)).toMatchObject({ action: 'delay', delayMs: 500 });
  });

  it('gives back the cost of the held publishes a closed connection dropped, and ends the episode', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    limiter.decide(0, 1000); // passes
    expect(limiter.decide(0, 400)).toMatchObject({ action: 'delay' }); // held, then dropped
    expect(limiter.throttled).toBe(true);
    limiter.connectionClosed(0, 1, 400);
    expect(limiter.throttled).toBe(false);
    // 100 ms later: 100 bytes and 1 message refilled since the 1000 that passed, nothing owed for the dropped 400
    expect(limiter.decide(100, 100)).toEqual({ action: 'pass' });
  });

  it('never gives back beyond the burst', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    limiter.connectionClosed(0, 50, 50_000);
    expect(limiter.decide(0, 1000)).toEqual({ action: 'pass' });
    expect(limiter.decide(0, 1)).toMatchObject({ action: 'delay' });
  });

  it('is rested once both buckets are full again', () => {
    const limiter = new PublishRateLimiter(limits, 0);
    expect(limiter.rested(0)).toBe(true);
    limiter.decide(0, 1000);
    expect(limiter.rested(500)).toBe(false); // bytes half refilled
    expect(limiter.rested(1_000)).toBe(true);
  });
});

describe('DEFAULT_PUBLISH_RATE_LIMITS', () => {
  it('let a device catch up at 10,000 readings/s (~2 MB/s) in full batches without waiting', () => {
    const limiter = new PublishRateLimiter(DEFAULT_PUBLISH_RATE_LIMITS, 0);
    // 10 batches of 1000 readings of ~200 bytes per second, for a minute
    for (let t = 0; t < 60_000; t += 100) expect(limiter.decide(t, 200_000).action).toBe('pass');
  });

  it("let a quiet device's largest payload through at once, and the edge agent's window of 4 full batches of 200-byte readings", () => {
    expect(new PublishRateLimiter(DEFAULT_PUBLISH_RATE_LIMITS, 0).decide(0, MAX_PAYLOAD_BYTES).action).toBe('pass');
    const limiter = new PublishRateLimiter(DEFAULT_PUBLISH_RATE_LIMITS, 0);
    for (let i = 0; i < 4; i++) expect(limiter.decide(0, 1000 * 200).action).toBe('pass');
  });

  it("spread the edge agent's window of 4 largest batches over at most half a second", () => {
    const limiter = new PublishRateLimiter(DEFAULT_PUBLISH_RATE_LIMITS, 0);
    const waits = Array.from({ length: 4 }, () => {
      const decision = limiter.decide(0, MAX_BATCH_BYTES);
      return decision.action === 'delay' ? decision.delayMs : 0;
    });
    expect(waits[0]).toBe(0);
    expect(Math.max(...waits)).toBeLessThanOrEqual(500);
  });

  it('slow down, then disconnect, a device flooding full batches as fast as it can', () => {
    const limiter = new PublishRateLimiter(DEFAULT_PUBLISH_RATE_LIMITS, 0);
    // 100 batches of 768 KiB per second (75 MiB/s), released as the limiter allows
    let t = 0;
    let firstDelayAt: number | undefined;
    let decision = limiter.decide(t, MAX_BATCH_BYTES);
    while (decision.action !== 'disconnect' && t < 60_000) {
      if (decision.action === 'delay') firstDelayAt ??= t;
      t += decision.action === 'delay' ? Math.max(10, decision.delayMs) : 10;
      decision = limiter.decide(t, MAX_BATCH_BYTES);
    }
    if (decision.action !== 'disconnect') throw new Error(`not disconnected within 60 s: ${decision.action}`);
    // slowed first, for nearly the whole maxThrottledMs: disconnected when its next publish would
    // be released more than maxThrottledMs after its first wait
    expect(t).toBeGreaterThan(0.9 * DEFAULT_PUBLISH_RATE_LIMITS.maxThrottledMs);
    expect(t + decision.delayMs - (firstDelayAt ?? 0)).toBeGreaterThan(DEFAULT_PUBLISH_RATE_LIMITS.maxThrottledMs);
  });
});
