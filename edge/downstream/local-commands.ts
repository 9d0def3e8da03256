/**
 * G6: commands handed to local applications wait here for their answer, each with its own
 * timeout, after which the command is `failed` (the timers are injected for tests). Only a command
 * that is waiting can be answered: an answer for an unknown command id, or one that already
 * finished or timed out, is refused (the caller logs it), so a local client cannot invent a
 * result for a command it was not asked to run.
 */
import type { Finished } from './command-decisions.js';

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const REAL_TIMERS: Timers = {
  setTimeout: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Waiting {
  finish: (finished: Finished | null) => void;
  timer: unknown;
}

export class LocalCommandWaits {
  readonly #timers: Timers;
  readonly #waiting = new Map<string, Waiting>();

  constructor(timers: Timers = REAL_TIMERS) {
    this.#timers = timers;
  }

  /**
   * Resolves with the application's answer, or `failed` once timeoutMs passed without one; null
   * when the agent stops first (the command stays executing and is failed at the next start).
   */
  wait(commandId: string, timeoutMs: number): Promise<Finished | null> {
    return new Promise<Finished | null>((resolve) => {
      const timer = this.#timers.setTimeout(() => {
        this.#waiting.delete(commandId);
        resolve({
          status: 'failed',
          error: `no local application answered within ${timeoutMs} ms (local/commands/${commandId}/result)`,
        });
      }, timeoutMs);
      this.#waiting.set(commandId, {
        timer,
        finish: (finished) => {
          this.#timers.clearTimeout(timer);
          this.#waiting.delete(commandId);
          resolve(finished);
        },
      });
    });
  }

  /** Delivers an answer; false when no command of that id is waiting. */
  answer(commandId: string, finished: Finished): boolean {
    const waiting = this.#waiting.get(commandId);
    if (waiting === undefined) return false;
    waiting.finish(finished);
    return true;
  }

  isWaiting(commandId: string): boolean {
    return this.#waiting.has(commandId);
  }

  get size(): number {
    return this.#waiting.size;
  }

  /** On shutdown: nothing more is awaited (the commands stay executing and fail at the next start). */
  abandonAll(): void {
    for (const waiting of [...this.#waiting.values()]) waiting.finish(null);
  }
}
