import { describe, expect, it } from 'vitest';
import {
  AdaptiveRate,
  ConnectionAdmission,
  DEFAULT_ADMISSION_LIMITS,
  TokenBucket,
  type AdmissionDecision,
  type AdmissionLimits,
  type AdmissionTicket,
} from '../../broker/admission-policy.js';

function clock(startMs = 1_000_000) {
  let nowMs = startMs;
  return { now: () => nowMs, advance: (ms: number) => (nowMs += ms) };
}

const roomy: AdmissionLimits = {
  maxConnections: 1000,
  maxPendingPerSource: 1000,
  handshakesPerSecond: 1000,
  handshakeBurst: 1000,
  maxEventLoopLagMs: 500,
  handshakeTargetMs: 2_000,
};

function ticketOf(decision: AdmissionDecision): AdmissionTicket {
  if (!decision.admitted) throw new Error(`refused: ${decision.reason}`);
  return decision.ticket;
}

describe('TokenBucket', () => {
  it('starts full, gives out its burst at once, then refills at its rate', () => {
    const time = clock();
    const bucket = new TokenBucket(10, 3, time.now);
    expect([1, 2, 3, 4].map(() => bucket.tryTake())).toEqual([true, true, true, false]);
    time.advance(99);
    expect(bucket.tryTake()).toBe(false);
    time.advance(1);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });

  it('never holds more than its burst, however long it was idle', () => {
    const time = clock();
    const bucket = new TokenBucket(10, 3, time.now);
    time.advance(3_600_000);
    expect(bucket.tokens).toBe(3);
  });

  it('admits the rate on average over a long run', () => {
    const time = clock();
    const bucket = new TokenBucket(250, 100, time.now);
    let taken = 0;
    // one attempt per millisecond for 10 s: 10,000 attempts, 1,000 / s offered
    for (let ms = 0; ms < 10_000; ms++) {
      if (bucket.tryTake()) taken += 1;
      time.advance(1);
    }
    expect(taken).toBeGreaterThanOrEqual(100 + 250 * 10 - 1);
    expect(taken).toBeLessThanOrEqual(100 + 250 * 10);
  });

  it('gains nothing from a clock that steps back', () => {
    const time = clock();
    const bucket = new TokenBucket(10, 1, time.now);
    expect(bucket.tryTake()).toBe(true);
    time.advance(-5_000);
    expect(bucket.tryTake()).toBe(false);
  });

  it('refuses a rate or burst that could never admit anything', () => {
    expect(() => new TokenBucket(0, 1, Date.now)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 0, Date.now)).toThrow(RangeError);
  });
});

describe('AdaptiveRate', () => {
  it('halves the rate when the handshakes of the last second took the target or longer, at most every 2 s', () => {
    const time = clock();
    const rate = new AdaptiveRate(200, 2_000, time.now);
    rate.observe(2_500);
    rate.observe(1_600);
    time.advance(1_000);
    expect(rate.current(5)).toBe(100);
    rate.observe(3_000);
    time.advance(1_000);
    // the handshakes finishing now were admitted before the decrease
    expect(rate.current(5)).toBe(100);
    rate.observe(3_000);
    time.advance(1_000);
    expect(rate.current(5)).toBe(50);
  });

  it('never goes below a twentieth of the configured rate', () => {
    const time = clock();
    const rate = new AdaptiveRate(200, 2_000, time.now);
    for (let second = 0; second < 60; second++) {
      rate.observe(9_000);
      time.advance(1_000);
      rate.current(5);
    }
    expect(rate.current(5)).toBe(10);
  });

  it('grows back by a tenth of the configured rate per second while handshakes are fast, up to it', () => {
    const time = clock();
    const rate = new AdaptiveRate(200, 2_000, time.now);
    rate.observe(5_000);
    time.advance(1_000);
    expect(rate.current(1)).toBe(100);
    const seen: number[] = [];
    for (let second = 0; second < 7; second++) {
      rate.observe(20);
      time.advance(1_000);
      seen.push(rate.current(1));
    }
    expect(seen).toEqual([120, 140, 160, 180, 200, 200, 200]);
  });

  it('learns nothing from a second in which handshakes were in progress but none finished', () => {
    const time = clock();
    const rate = new AdaptiveRate(200, 2_000, time.now);
    rate.observe(5_000);
    time.advance(1_000);
    expect(rate.current(3)).toBe(100);
    time.advance(1_000);
    expect(rate.current(3)).toBe(100);
    time.advance(1_000);
    expect(rate.current(0)).toBe(120);
  });

  it('counts a handshake the client started and gave up as slow: the rate halves', () => {
    const time = clock();
    const admission = new ConnectionAdmission({ ...roomy, handshakesPerSecond: 100, handshakeBurst: 100 }, time.now);
    const tickets = [1, 2, 3].map((n) => ticketOf(admission.admit(`10.3.0.${n}`)));
    time.advance(300);
    for (const ticket of tickets) ticket.handshakeFailed();
    time.advance(1_000);
    expect(admission.admit('10.3.1.1').admitted).toBe(true);
    expect(admission.admittedRate).toBe(50);
  });

  it('is not moved by sockets that close without a handshake', () => {
    const time = clock();
    const admission = new ConnectionAdmission({ ...roomy, handshakesPerSecond: 100, handshakeBurst: 100 }, time.now);
    for (let silent = 0; silent < 50; silent++) ticketOf(admission.admit(`10.1.0.${silent}`)).closed();
    time.advance(5_000);
    expect(admission.admit('10.2.0.1').admitted).toBe(true);
    expect(admission.admittedRate).toBe(100);
  });
});

describe('ConnectionAdmission', () => {
  it('refuses the connection over the total cap until one closes', () => {
    const admission = new ConnectionAdmission({ ...roomy, maxConnections: 2 }, clock().now);
    const first = ticketOf(admission.admit('10.0.0.1'));
    const second = ticketOf(admission.admit('10.0.0.2'));
    first.handshakeDone();
    second.handshakeDone();
    expect(admission.admit('10.0.0.3')).toEqual({ admitted: false, reason: 'total-cap' });
    first.closed();
    expect(admission.admit('10.0.0.3').admitted).toBe(true);
  });

  it('refuses the N+1th handshake from one source while another source is admitted', () => {
    const admission = new ConnectionAdmission({ ...roomy, maxPendingPerSource: 3 }, clock().now);
    const tickets = [1, 2, 3].map(() => ticketOf(admission.admit('10.0.0.1')));
    expect(admission.admit('10.0.0.1')).toEqual({ admitted: false, reason: 'source-cap' });
    expect(admission.admit('10.0.0.2').admitted).toBe(true);
    expect(tickets).toHaveLength(3);
  });

  it('counts only handshakes in progress against a source: completed ones free their slot', () => {
    const admission = new ConnectionAdmission({ ...roomy, maxPendingPerSource: 2 }, clock().now);
    for (let device = 0; device < 50; device++) ticketOf(admission.admit('203.0.113.7')).handshakeDone();
    expect(admission.open).toBe(50);
    expect(admission.pending).toBe(0);
    expect(admission.admit('203.0.113.7').admitted).toBe(true);
  });

  it('refuses handshakes beyond the rate, and a cap refusal takes no token', () => {
    const time = clock();
    const admission = new ConnectionAdmission(
      { ...roomy, maxPendingPerSource: 1, handshakesPerSecond: 2, handshakeBurst: 2 },
      time.now,
    );
    ticketOf(admission.admit('10.0.0.1'));
    // refused by the source cap: the second token stays in the bucket
    expect(admission.admit('10.0.0.1')).toEqual({ admitted: false, reason: 'source-cap' });
    ticketOf(admission.admit('10.0.0.2'));
    expect(admission.admit('10.0.0.3')).toEqual({ admitted: false, reason: 'rate' });
    time.advance(500);
    expect(admission.admit('10.0.0.3').admitted).toBe(true);
  });

  it('refuses handshakes while the event loop lags beyond the limit, without taking a token', () => {
    const admission = new ConnectionAdmission({ ...roomy, handshakesPerSecond: 1, handshakeBurst: 1 }, clock().now);
    expect(admission.admit('10.0.0.1', 501)).toEqual({ admitted: false, reason: 'overload' });
    expect(admission.admit('10.0.0.1', 500).admitted).toBe(true);
  });

  it('releases a ticket once, however often it is closed, and forgets sources without handshakes', () => {
    const admission = new ConnectionAdmission(roomy, clock().now);
    const ticket = ticketOf(admission.admit('10.0.0.1'));
    ticketOf(admission.admit('10.0.0.1'));
    ticket.closed();
    ticket.closed();
    ticket.handshakeDone();
    expect([admission.open, admission.pending, admission.sourcesWithPending]).toEqual([1, 1, 1]);
    const other = ticketOf(admission.admit('10.0.0.2'));
    other.handshakeDone();
    other.handshakeDone();
    other.closed();
    expect([admission.open, admission.pending, admission.sourcesWithPending]).toEqual([1, 1, 1]);
  });

  it('keeps per-source state only for sources with a handshake in progress (bounded memory)', () => {
    const admission = new ConnectionAdmission(roomy, clock().now);
    for (let host = 0; host < 500; host++) {
      const ticket = ticketOf(admission.admit(`198.51.100.${host}`));
      if (host % 2 === 0) ticket.closed();
      else ticket.handshakeDone();
    }
    expect(admission.sourcesWithPending).toBe(0);
  });

  it('has defaults that admit a burst and refuse nothing on caps for one quiet source', () => {
    const admission = new ConnectionAdmission(DEFAULT_ADMISSION_LIMITS, clock().now);
    const decisions = Array.from({ length: DEFAULT_ADMISSION_LIMITS.handshakeBurst }, () =>
      admission.admit('10.9.9.9'),
    );
    const refused = decisions.filter((decision) => !decision.admitted);
    // the per-source cap (64) is below the burst (100): a single source cannot take the whole burst
    expect(refused).toHaveLength(
      DEFAULT_ADMISSION_LIMITS.handshakeBurst - DEFAULT_ADMISSION_LIMITS.maxPendingPerSource,
    );
    expect(refused.every((decision) => !decision.admitted && decision.reason === 'source-cap')).toBe(true);
  });

  it('refuses limits that are not positive', () => {
    expect(() => new ConnectionAdmission({ ...roomy, maxConnections: 0 }, Date.now)).toThrow(RangeError);
    expect(() => new ConnectionAdmission({ ...roomy, handshakesPerSecond: Number.NaN }, Date.now)).toThrow(RangeError);
  });
});
