/**
 * Waiting in tests, never a blind sleep. A condition that must come true: vitest's expect.poll
 * with an explicit timeout (the one polling mechanism of this suite; on timeout it fails with the
 * assertion and the last value seen); waitFor below is the same poll for a probe whose accepted
 * value the test goes on to use. An event: nextEvent below.
 */
import { expect } from 'vitest';

export interface WaitOptions {
  /** default 15 s */
  timeoutMs?: number;
  /** default 25 ms */
  intervalMs?: number;
}

/**
 * Polls `probe` (through expect.poll) until `accept` takes its value, and returns that value; on
 * timeout it fails naming `what` and the last value seen.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  options: WaitOptions = {},
): Promise<T> {
  let last: T | undefined;
  await expect
    .poll(
      async () => {
        last = await probe();
        return accept(last);
      },
      { timeout: options.timeoutMs ?? 15_000, interval: options.intervalMs ?? 25, message: `waiting for ${what}` },
    )
    .toBe(true);
  return last as T;
}

/**
 * The timeout of a test whose bounded inner waits (expect.poll timeouts, connect timeouts, event
 * waits, process start-ups) add up to more than the project's test timeout: their sum, plus
 * SLACK_MS for the steps around them that have no bound of their own (a PUBACK, a query, starting
 * a service). The inner wait that fails then reports its own assertion, not a bare "Test timed out".
 */
export function timeoutFor(...innerWaitsMs: number[]): number {
  return innerWaitsMs.reduce((sum, ms) => sum + ms, 0) + SLACK_MS;
}

export const SLACK_MS = 15_000;

/** Resolves with the first event of `emitter` named `event`, or fails after timeoutMs. */
export function nextEvent<A extends unknown[]>(
  emitter: {
    once(event: string, listener: (...args: A) => void): unknown;
    off(event: string, listener: (...args: A) => void): unknown;
  },
  event: string,
  timeoutMs = 10_000,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const listener = (...args: A) => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    emitter.once(event, listener);
  });
}
