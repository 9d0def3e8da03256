/**
 * Waiting in tests, never a blind sleep. A condition that must come true: vitest's expect.poll
 * with an explicit timeout (the one polling mechanism of this suite; on timeout it fails with the
 * assertion and the last value seen). An event: nextEvent below.
 */

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
