/**
 * Which TCP connections the MQTTS listener lets start a TLS handshake (pure: no sockets, no
 * timers; the clock is injected). Wired to the listener by ./connection-admission.ts.
 *
 * Guarantees (G7: no device can slow another; bounded memory):
 *   - at most `maxConnections` sockets are open on the listener at once, in any phase (TLS
 *     handshake, waiting for CONNECT, MQTT session); the open-files limit of the process must
 *     leave room above it;
 *   - at most `maxPendingPerSource` sockets from one source address are in the TLS handshake at
 *     once. Only the handshake phase counts: a socket that completed it holds a certificate of
 *     the cluster CA and is an identified device, and fleets behind one NAT address must not be
 *     capped in their steady state. Without a certificate nobody gets past this phase, and it is
 *     bounded in time by the handshake timeout (node 20 tls.Server handshakeTimeout, the socket
 *     destroyed by ./connection-admission.ts);
 *   - new handshakes are admitted at `handshakesPerSecond` on average with bursts of
 *     `handshakeBurst` (a token bucket); the excess is refused at once, before TLS starts, so in
 *     a reconnect storm a client learns within a round trip that it must back off, instead of
 *     queueing behind handshakes the broker cannot finish within the client's connect timeout.
 *   - while the broker's event loop lags more than `maxEventLoopLagMs` behind (it is busy with
 *     more handshakes than its CPU share finishes), new handshakes are refused too: a fixed rate
 *     is right only for the CPU it was measured on, and on a machine shared with other work the
 *     broker's share, and so its handshake capacity, is smaller. Admitting more than it finishes
 *     queues handshakes until the clients' connect timeouts fire, and every one of those is
 *     wasted (the collapse this module exists to prevent). Silent sockets cost no CPU, so an
 *     attacker holding them does not trigger this;
 *   - the rate adapts to how fast handshakes actually complete (AdaptiveRate below): it halves
 *     while they take `handshakeTargetMs` (2 s) or longer on average, whatever makes them slow
 *     (the broker's CPU, the network, the clients);
 *   - the state is one counter per source address with a handshake in progress: at most
 *     maxConnections entries.
 *
 * Refusals by a cap or for overload do not take a token: they cost the broker no handshake.
 *
 * The defaults, and why (2-core development machine, node 20, RSA 2048 keys, broker in its own
 * process; `npm run bench:reconnect` prints the broker's CPU per device): a full mutual-TLS 1.3
 * handshake plus the MQTT CONNECT of a clean:false session with a retained will, the device's
 * retained online status and its subscription cost the broker 2.0–3.2 ms of CPU, so one broker
 * process with a core of its own finishes 300–500 connections/s. Admitting at most 250/s keeps it
 * below that with room for the traffic of the devices already connected, so an admitted
 * handshake finishes in milliseconds, far from the client's 10 s connect timeout. When the broker
 * gets less CPU than that (a shared machine), the event-loop lag and the adaptive rate bring the
 * admissions down to what it finishes. The burst of 100 absorbs 0.4 s of arrivals at the full
 * rate without refusing anybody; 64 handshakes per source is far above what one device needs
 * and lets a few dozen devices behind one NAT address reconnect at once.
 */

export interface AdmissionLimits {
  /** sockets open on the listener, in any phase */
  maxConnections: number;
  /** sockets from one source address still in the TLS handshake */
  maxPendingPerSource: number;
  /** average rate of admitted handshakes */
  handshakesPerSecond: number;
  /** handshakes admitted at once after a quiet period (token bucket depth) */
  handshakeBurst: number;
  /** refuse new handshakes while the event loop is this far behind */
  maxEventLoopLagMs: number;
  /** halve the admitted rate while completed handshakes take this long on average (AdaptiveRate) */
  handshakeTargetMs: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  maxConnections: 10_000,
  maxPendingPerSource: 64,
  handshakesPerSecond: 250,
  handshakeBurst: 100,
  maxEventLoopLagMs: 1_000,
  handshakeTargetMs: 2_000,
};

export type AdmissionRefusal = 'total-cap' | 'source-cap' | 'overload' | 'rate';

/** One admitted connection. Both methods are idempotent. */
export interface AdmissionTicket {
  /** the TLS handshake completed: the socket no longer counts against its source */
  handshakeDone(): void;
  /**
   * the TLS handshake failed after the client had started it (it sent data): counted like a
   * handshake that took at least handshakeTargetMs (see AdaptiveRate); the socket no longer
   * counts against its source
   */
  handshakeFailed(): void;
  /** the socket closed: it no longer counts at all */
  closed(): void;
}

export type AdmissionDecision =
  | { admitted: true; ticket: AdmissionTicket }
  | { admitted: false; reason: AdmissionRefusal };

/** A token bucket: `ratePerSecond` tokens per second, at most `burst` kept. */
export class TokenBucket {
  #ratePerMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAtMs: number;

  constructor(ratePerSecond: number, burst: number, now: () => number) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) {
      throw new RangeError(`a token bucket needs a rate > 0 and a burst ≥ 1, got ${ratePerSecond}/s, ${burst}`);
    }
    this.#ratePerMs = ratePerSecond / 1000;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#updatedAtMs = now();
  }

  /** Takes one token when there is one. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  get ratePerSecond(): number {
    return this.#ratePerMs * 1000;
  }

  /** Changes the rate from now on (tokens already in the bucket stay). */
  setRate(ratePerSecond: number): void {
    if (!(ratePerSecond > 0)) throw new RangeError(`a token bucket needs a rate > 0, got ${ratePerSecond}/s`);
    this.#refill();
    this.#ratePerMs = ratePerSecond / 1000;
  }

  #refill(): void {
    const now = this.#now();
    // a clock that steps back adds nothing (and takes nothing)
    const elapsed = Math.max(0, now - this.#updatedAtMs);
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#ratePerMs);
    this.#updatedAtMs = now;
  }
}

/**
 * The handshake rate, adapted to how fast handshakes actually complete (AIMD, as TCP does with its
 * window): when the handshakes completed in the last second took `targetMs` or longer on average
 * (from accept to the finished handshake), admission is ahead of what the broker, or the path to
 * the clients, finishes, and the rate halves, at most once per ADAPT_DECREASE_EVERY_MS (the
 * handshakes completing right after a decrease were admitted before it); otherwise it grows by a
 * tenth of the configured rate per second, up to the configured rate. Never below a twentieth of
 * it. Measured are completed handshakes, and failed ones of clients that had started theirs,
 * each counted as at least `targetMs`: a client that gave up waiting (typically at its connect
 * timeout) is the clearest sign of admitting too much, and the completed handshakes alone miss
 * exactly those (measured: in a 5,000-device storm the rate stayed at its maximum while 1,100
 * clients timed out). A socket that never sends a byte does not move the rate; a client that
 * starts handshakes and stalls them does, which can lower the rate to its floor but never to
 * zero, and the per-source cap bounds how many such stalls one address holds at once.
 */
export class AdaptiveRate {
  readonly #maxRate: number;
  readonly #targetMs: number;
  readonly #now: () => number;
  #rate: number;
  #windowStartMs: number;
  #windowSumMs = 0;
  #windowCount = 0;
  #lastDecreaseMs = Number.NEGATIVE_INFINITY;

  constructor(maxRatePerSecond: number, targetMs: number, now: () => number) {
    this.#maxRate = maxRatePerSecond;
    this.#targetMs = targetMs;
    this.#now = now;
    this.#rate = maxRatePerSecond;
    this.#windowStartMs = now();
  }

  /** One handshake completed after `durationMs`. */
  observe(durationMs: number): void {
    this.#windowSumMs += durationMs;
    this.#windowCount += 1;
  }

  /** The rate to admit at now; `inProgress`: handshakes admitted and not finished yet. */
  current(inProgress: number): number {
    const now = this.#now();
    const elapsed = now - this.#windowStartMs;
    if (elapsed < ADAPT_WINDOW_MS) return this.#rate;
    if (this.#windowCount > 0) {
      const meanMs = this.#windowSumMs / this.#windowCount;
      if (meanMs >= this.#targetMs) {
        if (now - this.#lastDecreaseMs >= ADAPT_DECREASE_EVERY_MS) {
          this.#rate = Math.max(this.#maxRate / 20, this.#rate / 2);
          this.#lastDecreaseMs = now;
        }
      } else {
        const seconds = Math.min(elapsed, 10 * ADAPT_WINDOW_MS) / 1000;
        this.#rate = Math.min(this.#maxRate, this.#rate + (this.#maxRate / 10) * seconds);
      }
    } else if (inProgress === 0) {
      // idle: nothing completes because nothing was started, so go back up
      this.#rate = Math.min(this.#maxRate, this.#rate + (this.#maxRate / 10) * (elapsed / 1000));
    }
    this.#windowStartMs = now;
    this.#windowSumMs = 0;
    this.#windowCount = 0;
    return this.#rate;
  }
}

const ADAPT_WINDOW_MS = 1_000;
const ADAPT_DECREASE_EVERY_MS = 2_000;

export class ConnectionAdmission {
  readonly #limits: AdmissionLimits;
  readonly #bucket: TokenBucket;
  readonly #adaptiveRate: AdaptiveRate;
  readonly #now: () => number;
  readonly #pendingBySource = new Map<string, number>();
  #open = 0;
  #pending = 0;

  constructor(limits: AdmissionLimits, now: () => number) {
    assertLimits(limits);
    this.#limits = limits;
    this.#bucket = new TokenBucket(limits.handshakesPerSecond, limits.handshakeBurst, now);
    this.#adaptiveRate = new AdaptiveRate(limits.handshakesPerSecond, limits.handshakeTargetMs, now);
    this.#now = now;
  }

  /** Decides on a new connection from `source` (its remote address); `eventLoopLagMs`: how far behind the broker is now. */
  admit(source: string, eventLoopLagMs = 0): AdmissionDecision {
    if (this.#open >= this.#limits.maxConnections) return { admitted: false, reason: 'total-cap' };
    const pendingFromSource = this.#pendingBySource.get(source) ?? 0;
    if (pendingFromSource >= this.#limits.maxPendingPerSource) return { admitted: false, reason: 'source-cap' };
    if (eventLoopLagMs > this.#limits.maxEventLoopLagMs) return { admitted: false, reason: 'overload' };
    const rate = this.#adaptiveRate.current(this.#pending);
    if (rate !== this.#bucket.ratePerSecond) this.#bucket.setRate(rate);
    if (!this.#bucket.tryTake()) return { admitted: false, reason: 'rate' };
    this.#open += 1;
    this.#pending += 1;
    this.#pendingBySource.set(source, pendingFromSource + 1);
    return { admitted: true, ticket: this.#ticket(source) };
  }

  /** sockets admitted and not closed */
  get open(): number {
    return this.#open;
  }

  /** admitted sockets still in the TLS handshake */
  get pending(): number {
    return this.#pending;
  }

  /** the handshake rate admitted now (handshakesPerSecond, or less while handshakes complete slowly) */
  get admittedRate(): number {
    return this.#bucket.ratePerSecond;
  }

  /** source addresses with a handshake in progress (the size of the per-source state) */
  get sourcesWithPending(): number {
    return this.#pendingBySource.size;
  }

  #ticket(source: string): AdmissionTicket {
    let pending = true;
    let open = true;
    const admittedAtMs = this.#now();
    const leavePending = () => {
      if (!pending) return;
      pending = false;
      this.#pending -= 1;
      const left = (this.#pendingBySource.get(source) ?? 1) - 1;
      if (left <= 0) this.#pendingBySource.delete(source);
      else this.#pendingBySource.set(source, left);
    };
    return {
      handshakeDone: () => {
        if (pending) this.#adaptiveRate.observe(this.#now() - admittedAtMs);
        leavePending();
      },
      handshakeFailed: () => {
        if (pending) this.#adaptiveRate.observe(Math.max(this.#now() - admittedAtMs, this.#limits.handshakeTargetMs));
        leavePending();
      },
      closed: () => {
        leavePending();
        if (!open) return;
        open = false;
        this.#open -= 1;
      },
    };
  }
}

function assertLimits(limits: AdmissionLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value <= 0)
      throw new RangeError(`admission limit ${name} must be > 0, got ${value}`);
  }
  if (limits.handshakeBurst < 1) throw new RangeError(`handshakeBurst must be ≥ 1, got ${limits.handshakeBurst}`);
}
