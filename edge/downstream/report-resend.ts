/**
 * G6: when an unconfirmed report (a command's latest report, a config key's latest report) is sent
 * again (pure: the clock is injected). A report is re-sent until the control plane's retained
 * message confirms it: at once on every (re)connect, then after baseMs, doubling up to maxMs, so a
 * report whose confirmation is slow (the bridge down) costs little, and one lost with a connection
 * goes again as soon as a new one exists.
 */

export interface ResendPolicy {
  /** wait before the first re-send */
  baseMs: number;
  /** longest wait between two sends */
  maxMs: number;
}

export function resendDelayMs(policy: ResendPolicy, sends: number): number {
  const exponent = Math.max(0, Math.min(sends - 1, 30));
  return Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
}

export class ResendSchedule {
  readonly #policy: ResendPolicy;
  readonly #now: () => number;
  readonly #entries = new Map<string, { sends: number; nextAtMs: number }>();

  constructor(policy: ResendPolicy, now: () => number) {
    this.#policy = policy;
    this.#now = now;
  }

  /** Whether `key` should be sent now: never sent (by this run), or its wait is over. */
  due(key: string): boolean {
    const entry = this.#entries.get(key);
    return entry === undefined || this.#now() >= entry.nextAtMs;
  }

  noteSent(key: string): void {
    const sends = (this.#entries.get(key)?.sends ?? 0) + 1;
    this.#entries.set(key, { sends, nextAtMs: this.#now() + resendDelayMs(this.#policy, sends) });
  }

  /** A new report (another status or version) starts its own schedule. */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** After a (re)connect: everything is due at once, the backoff restarts. */
  reset(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
