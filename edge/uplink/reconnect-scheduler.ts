/**
 * Schedules reconnects of the uplink with jittered exponential backoff (common/retry-policy):
 * the delay grows with consecutive failures and resets after a successful connection; an
 * authentication failure always waits the maximum delay.
 */
import { reconnectDelay, type BackoffPolicy, type ErrorClass } from '../../common/retry-policy.js';

export class ReconnectScheduler {
  readonly #policy: BackoffPolicy;
  readonly #random: () => number;
  #consecutiveFailures = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.#policy = policy;
    this.#random = random;
  }

  /** A connection succeeded: the next failure starts from the initial delay again. */
  connected(): void {
    this.#consecutiveFailures = 0;
  }

  /** Replaces any scheduled attempt with one after the backoff delay; returns the delay in ms. */
  schedule(lastErrorClass: ErrorClass, attempt: () => void): number {
    this.cancel();
    this.#consecutiveFailures += 1;
    const delay = reconnectDelay(this.#policy, this.#consecutiveFailures, lastErrorClass, this.#random);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      attempt();
    }, delay);
    return delay;
  }

  cancel(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }
}
