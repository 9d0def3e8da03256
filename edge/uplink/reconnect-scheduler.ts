/**
 * Schedules the uplink's reconnects (mqtt.js 5.16 reconnects on its own only every
 * reconnectPeriod, without backoff; the uplink turns that off and calls reconnect() from here).
 * The delay comes from the pure policy in common/retry-policy.ts: full jitter over a window that
 * doubles with each failure in a row, up to a ceiling, and resets after a connection; an
 * authentication failure waits 30–60 s every time.
 *
 * Why full jitter over a first window of 5 s, and a ceiling of 15 s (DEFAULT_RECONNECT_POLICY):
 *
 *   - A broker restart drops every device at the same moment. With the previous policy (1 s
 *     doubling to 60 s, equal jitter: the first retry in [0.5 s, 1 s]) 5,000 devices came back
 *     within the same half second; the broker queued their handshakes past the devices' 10 s
 *     connect timeout, 8,171 handshakes were wasted and the last device was back after 97 s.
 *     Full jitter spreads the first retries evenly over 5 s, and each failure in a row doubles
 *     the window (5, 10, 15 s), so the offered rate falls as long as the broker keeps refusing.
 *   - The broker admits at most BROKER_HANDSHAKE_RATE (250) handshakes a second, fewer while
 *     they complete slowly, and resets the rest before TLS (broker/admission-policy.ts): a device
 *     that is refused knows it within a round trip (a TCP reset, a 'network' error) and backs
 *     off; a refused attempt costs the broker one accept(), not a handshake. So the time for N
 *     devices to come back is about N / admitted rate plus one window for the last refused ones:
 *     5,000 / 250 = 20 s + the broker's start + up to 15 s. The admitted rate is bounded by the
 *     broker's CPU: measured 2.4–4.0 ms per connection (handshake, CONNECT, online status,
 *     subscription), i.e. 250–400/s on a core of its own. 5,000 devices offered over the first
 *     5 s window are 1,000/s, so most first retries are refused and retried over 10 and 15 s
 *     windows (5,000 / 15 s = 333/s): the offered rate comes down to what is admitted within
 *     two or three rounds, and failed handshakes stay near zero. Measured with
 *     `npm run bench:reconnect` (docs/capacity.md): failed handshakes per device after a
 *     restart 0.001–0.18 instead of 0.2–1.6; the time to all 5,000 back was bound by the CPU
 *     share the shared development machine left to the broker and the load client.
 *   - After an outage of any length the window is at most 15 s, so once the network is back the
 *     next attempt comes within 15 s, 5 s on average (a device at the ceiling tries every 7.5 s
 *     on average and the wait from a random moment to its next attempt is a third of the
 *     window); with the 60 s ceiling the first row arrived 38–41 s after the network returned.
 *     The price is that a device retries a dead broker every 7.5 s on average instead of every
 *     45 s: 5,000 devices send ~670 TCP connection attempts a second to a broker that is down,
 *     which costs it nothing, and to one that is up but saturated, one accept() and one reset each.
 */
import {
  authWindow,
  backoffCeiling,
  reconnectDelay,
  type ErrorClass,
  type ReconnectPolicy,
} from '../../common/retry-policy.js';

export const DEFAULT_RECONNECT_POLICY: ReconnectPolicy = {
  initialDelayMs: 5_000,
  maxDelayMs: 15_000,
  multiplier: 2,
  jitter: 'full',
  authFailureDelayMs: 60_000,
};

/** The policy before issue 6 (auth failures aside: those waited exactly 60 s), for `npm run bench:reconnect -- --policy previous`. */
export const PREVIOUS_RECONNECT_POLICY: ReconnectPolicy = {
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  multiplier: 2,
  jitter: 'equal',
  authFailureDelayMs: 60_000,
};

export interface ScheduledReconnect {
  delayMs: number;
  /** failures in a row, this one included */
  failures: number;
  /** the upper end of the delay's jitter window */
  windowMs: number;
  errorClass: ErrorClass;
}

export class ReconnectScheduler {
  readonly #policy: ReconnectPolicy;
  readonly #random: () => number;
  #consecutiveFailures = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(policy: ReconnectPolicy = DEFAULT_RECONNECT_POLICY, random: () => number = Math.random) {
    this.#policy = policy;
    this.#random = random;
  }

  /** A connection succeeded: the next failure starts from the initial window again. */
  connected(): void {
    this.#consecutiveFailures = 0;
  }

  /** Replaces any scheduled attempt with one after the backoff delay; returns what was scheduled. */
  schedule(lastErrorClass: ErrorClass, attempt: () => void): ScheduledReconnect {
    this.cancel();
    this.#consecutiveFailures += 1;
    const failures = this.#consecutiveFailures;
    const delayMs = reconnectDelay(this.#policy, failures, lastErrorClass, this.#random);
    const windowMs = lastErrorClass === 'auth' ? authWindow(this.#policy) : backoffCeiling(this.#policy, failures);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      attempt();
    }, delayMs);
    return { delayMs, failures, windowMs, errorClass: lastErrorClass };
  }

  cancel(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }
}
