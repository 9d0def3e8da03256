/** Bounded polling for a condition (never a blind sleep): fails with what was awaited and the last value seen. */
export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await probe();
    if (accept(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

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
