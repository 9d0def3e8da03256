/**
 * Logs a recurring event at most once per interval, with a count, instead of once per event.
 *
 * Why: a sensor that sends garbage at full speed, or a full disk that refuses every commit, made
 * the edge write one line per reading (about 25 lines/s, without bound), which fills the disk the
 * agent is trying to protect and buries everything else. Now the first event of a kind is logged
 * at once (an operator sees the problem start), the following ones are counted, and one line per
 * interval reports how many there were, with the first of them as a sample.
 *
 * EventCounter is the pure part (clock injected, no timers, unit-tested); rateLimitedLog wires it
 * to a pino logger and an unref'd timer that reports the counted events when their interval ends.
 */
import type { Logger } from './logger.js';

export interface LogSummary<T> {
  key: string;
  /** events this line stands for (1 for the first of a burst) */
  count: number;
  /** the first event counted into this line */
  sample: T;
  /** epoch ms of the first and the last event counted into this line */
  firstAtMs: number;
  lastAtMs: number;
}

interface KeyState<T> {
  lastEmittedAtMs: number;
  counted: number;
  sample: T | undefined;
  firstAtMs: number;
  lastAtMs: number;
}

export class EventCounter<T> {
  readonly #intervalMs: number;
  readonly #keys = new Map<string, KeyState<T>>();

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  /** Counts an event; returns a line to log now (the first event, or one after a quiet interval), else null. */
  note(key: string, sample: T, nowMs: number): LogSummary<T> | null {
    const state = this.#keys.get(key);
    if (state === undefined || (state.counted === 0 && nowMs - state.lastEmittedAtMs >= this.#intervalMs)) {
      this.#keys.set(key, { lastEmittedAtMs: nowMs, counted: 0, sample: undefined, firstAtMs: nowMs, lastAtMs: nowMs });
      return { key, count: 1, sample, firstAtMs: nowMs, lastAtMs: nowMs };
    }
    if (state.counted === 0) {
      state.sample = sample;
      state.firstAtMs = nowMs;
    }
    state.counted += 1;
    state.lastAtMs = nowMs;
    return null;
  }

  /** Lines due at nowMs: keys with counted events whose interval since the last line has ended. */
  due(nowMs: number): LogSummary<T>[] {
    const lines: LogSummary<T>[] = [];
    for (const [key, state] of this.#keys) {
      if (state.counted > 0 && nowMs - state.lastEmittedAtMs >= this.#intervalMs)
        lines.push(this.#emit(key, state, nowMs));
      else if (state.counted === 0 && nowMs - state.lastEmittedAtMs >= 2 * this.#intervalMs) this.#keys.delete(key);
    }
    return lines;
  }

  /** Every counted event, now, whatever the interval (at shutdown). */
  flush(nowMs: number): LogSummary<T>[] {
    const lines: LogSummary<T>[] = [];
    for (const [key, state] of this.#keys) if (state.counted > 0) lines.push(this.#emit(key, state, nowMs));
    return lines;
  }

  #emit(key: string, state: KeyState<T>, nowMs: number): LogSummary<T> {
    const line = {
      key,
      count: state.counted,
      sample: state.sample as T,
      firstAtMs: state.firstAtMs,
      lastAtMs: state.lastAtMs,
    };
    state.counted = 0;
    state.sample = undefined;
    state.lastEmittedAtMs = nowMs;
    return line;
  }
}

export interface RateLimitedLog<T> {
  /** counts an event of kind `key`; logs it at once if it is the first for an interval */
  note(key: string, sample: T): void;
  /** logs what is still counted and stops the timer; idempotent */
  close(): void;
}

export interface RateLimitedLogOptions<T> {
  intervalMs: number;
  level: 'warn' | 'error' | 'info';
  /** the log line for `summary.count` events, e.g. "rejected 120 sensor readings in the last 10 s …" */
  message: (summary: LogSummary<T>) => string;
  now?: () => number;
}

export function rateLimitedLog<T extends object>(logger: Logger, options: RateLimitedLogOptions<T>): RateLimitedLog<T> {
  const counter = new EventCounter<T>(options.intervalMs);
  const now = options.now ?? Date.now;
  const write = (summary: LogSummary<T>) => {
    const fields: Record<string, unknown> = { ...summary.sample, count: summary.count, key: summary.key };
    logger[options.level](fields, options.message(summary));
  };
  const timer = setInterval(() => counter.due(now()).forEach(write), Math.max(10, Math.floor(options.intervalMs / 2)));
  timer.unref();
  let closed = false;
  return {
    note(key, sample) {
      const line = counter.note(key, sample, now());
      if (line !== null) write(line);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      counter.flush(now()).forEach(write);
    },
  };
}
