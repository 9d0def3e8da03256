/**
 * Per-client publish rate limits (G7: no device can slow another), as pure decisions over an
 * injected clock. The wiring to aedes is ./publish-throttle.ts.
 *
 * Each client has two token buckets, one counting messages and one counting payload bytes. A
 * publish reserves its cost from both at once; a bucket may go into debt, and the publish then
 * waits until the debt is paid back at the bucket's rate (the larger of the two waits). Reserving
 * at arrival keeps a client's publishes in arrival order and makes each wait exactly what its
 * predecessors left owing, however they arrive.
 *
 * A client over its limit is slowed first: its publish is held back, and with it its PUBACK and
 * every later packet of that client (see ./publish-throttle.ts for why that is backpressure on
 * that client only). It is disconnected when it stays over its limit: when a publish would be
 * released more than `maxThrottledMs` after the client first had to wait, without a publish in
 * between that passed at once. Waiting for PUBACKs does not help a client that keeps its window
 * full: what counts is whether it ever lets the bucket refill.
 *
 * Defaults (DEFAULT_PUBLISH_RATE_LIMITS; broker/config.ts reads the BROKER_RATE_* variables).
 * AWS IoT Core allows 100 publishes/s and 512 KB/s per connection. Here one connection carries a
 * whole device, including its catch-up after an outage: the edge agent sends up to 4 full batches
 * (MAX_IN_FLIGHT_BATCHES) of up to 1000 readings and 768 KiB (MAX_BATCH_BYTES) and drains a
 * backlog at ≥ 10,000 readings/s, about 2 MB/s with ~200-byte readings (docs/capacity.md:
 * 7,600-9,900 readings/s end to end for one device on two cores). So:
 *
 *   bytes     4 MiB/s, burst 1 MiB: the rate is twice that catch-up, room for readings twice as
 *             large. The burst is one largest payload (MAX_PAYLOAD_BYTES), so a quiet device's
 *             single message never waits, and it holds the edge's whole window of full batches
 *             of typical readings (4 × 1000 × ~200 B ≈ 800 KB); a window of largest batches
 *             (4 × 768 KiB = 3 MiB) is spread over about half a second, which a catch-up paced
 *             by the rate anyway never notices. A burst is not free: it is what a quiet device
 *             may put on the bridge and the database at once, on top of the rate. With 8 MiB
 *             (this default until issue 7's fairness work) the other device's p99 sync/ack
 *             under npm run bench:fairness was ×5.9–6.8 of its unloaded value, against ×3.4–3.9
 *             with 1 MiB, in alternating runs of one session: the slowest samples were in the
 *             first second and a half of the flood, while the bridge worked off the burst.
 *   messages  200/s, burst 400: a batching edge agent sends a batch per commit (20 ms linger) and
 *             at most 4 full batches' worth of readings (16 small batches) awaiting their
 *             sync/ack: tens per second; 200/s is twice AWS' figure and
 *             still bounds a client flooding small messages to 200 routing operations per second.
 *   stays over for 10 s → disconnected: more than twice the catch-up rate for 10 s straight is
 *             not a catch-up. (An edge agent would get there only if its bridge confirmed more
 *             than ~20,000 readings/s for that one device; it then reconnects and goes on: its
 *             session is clean:false.)
 *
 * The service role (the bridge) is not limited: it publishes a sync/ack for every device's
 * batch, so its rate is the sum of all devices' (which the device limits bound), and slowing it
 * would slow every device. Observers cannot publish at all (./acl.ts).
 */

export interface RateLimit {
  /** tokens added per second */
  perSecond: number;
  /** the most tokens the bucket holds (the burst a quiet client may send at once) */
  burst: number;
}

export interface PublishRateLimits {
  messages: RateLimit;
  /** payload bytes */
  bytes: RateLimit;
  /** a client whose publishes keep waiting for longer than this is disconnected */
  maxThrottledMs: number;
}

const MIB = 1024 * 1024;

export const DEFAULT_PUBLISH_RATE_LIMITS: PublishRateLimits = {
  messages: { perSecond: 200, burst: 400 },
  bytes: { perSecond: 4 * MIB, burst: MIB },
  maxThrottledMs: 10_000,
};

/** A token bucket whose tokens may go negative: reserve() returns how long the caller must wait. */
export class TokenBucket {
  #tokens: number;
  #updatedAtMs: number;

  constructor(
    readonly limit: RateLimit,
    nowMs: number,
  ) {
    this.#tokens = limit.burst;
    this.#updatedAtMs = nowMs;
  }

  /** Takes `cost` tokens now; the wait (ms) until the bucket is out of debt again, 0 when it is not in debt. */
  reserve(nowMs: number, cost: number): number {
    this.#refill(nowMs);
    this.#tokens -= cost;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.limit.perSecond) * 1000;
  }

  /** Gives back `cost` tokens reserved for something that never happened (never beyond the burst). */
  refund(nowMs: number, cost: number): void {
    this.#refill(nowMs);
    this.#tokens = Math.min(this.limit.burst, this.#tokens + cost);
  }

  /** The tokens available at `nowMs` (negative while in debt). */
  tokens(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  #refill(nowMs: number): void {
    const elapsedMs = Math.max(0, nowMs - this.#updatedAtMs);
    this.#tokens = Math.min(this.limit.burst, this.#tokens + (elapsedMs / 1000) * this.limit.perSecond);
    this.#updatedAtMs = Math.max(this.#updatedAtMs, nowMs);
  }
}

/** What happened while a client was over its limit (for the log line when it is disconnected). */
export interface ThrottleEpisode {
  /** since when the client's publishes have had to wait */
  sinceMs: number;
  messages: number;
  bytes: number;
}

export type PublishDecision =
  | { action: 'pass' }
  /** hold the publish back for delayMs; `started` is true for the first held publish of an episode */
  | { action: 'delay'; delayMs: number; started: boolean }
  | { action: 'disconnect'; delayMs: number; episode: ThrottleEpisode };

/**
 * One client identity's limits. The broker keeps one per clientId (= the certificate's CN,
 * ./identity.ts) across that identity's connections (./publish-throttle.ts): a reconnect resumes
 * the buckets where the last connection left them, so disconnecting (or being disconnected) never
 * buys a fresh burst.
 */
export class PublishRateLimiter {
  readonly #messages: TokenBucket;
  readonly #bytes: TokenBucket;
  #episode: ThrottleEpisode | undefined;

  constructor(
    readonly limits: PublishRateLimits,
    nowMs: number,
  ) {
    this.#messages = new TokenBucket(limits.messages, nowMs);
    this.#bytes = new TokenBucket(limits.bytes, nowMs);
  }

  /** Whether the client's last publish had to wait (it is over its limit). */
  get throttled(): boolean {
    return this.#episode !== undefined;
  }

  /**
   * The client's connection closed with publishes held back (never acknowledged, never routed:
   * the client sends them again): their cost is given back, and the episode ends. What the
   * publishes that passed cost stays spent.
   */
  connectionClosed(nowMs: number, heldMessages: number, heldBytes: number): void {
    this.#messages.refund(nowMs, heldMessages);
    this.#bytes.refund(nowMs, heldBytes);
    this.#episode = undefined;
  }

  /** Whether both buckets are full at `nowMs`: a fresh limiter would decide the same from now on. */
  rested(nowMs: number): boolean {
    return (
      this.#messages.tokens(nowMs) >= this.limits.messages.burst && this.#bytes.tokens(nowMs) >= this.limits.bytes.burst
    );
  }

  decide(nowMs: number, payloadBytes: number): PublishDecision {
    const delayMs = Math.max(this.#messages.reserve(nowMs, 1), this.#bytes.reserve(nowMs, payloadBytes));
    if (delayMs === 0) {
      this.#episode = undefined;
      return { action: 'pass' };
    }
    const started = this.#episode === undefined;
    const episode = (this.#episode ??= { sinceMs: nowMs, messages: 0, bytes: 0 });
    episode.messages += 1;
    episode.bytes += payloadBytes;
    if (nowMs + delayMs - episode.sinceMs > this.limits.maxThrottledMs) {
      return { action: 'disconnect', delayMs, episode: { ...episode } };
    }
    return { action: 'delay', delayMs, started };
  }
}

/** Average rates over an episode that lasted until `nowMs` (at least one millisecond). */
export function episodeRates(
  episode: ThrottleEpisode,
  nowMs: number,
): { messagesPerSecond: number; bytesPerSecond: number } {
  const seconds = Math.max(1, nowMs - episode.sinceMs) / 1000;
  return {
    messagesPerSecond: Math.round(episode.messages / seconds),
    bytesPerSecond: Math.round(episode.bytes / seconds),
  };
}
