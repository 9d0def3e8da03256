/**
 * Pure batching of validated telemetry messages from many devices into database batches
 * (no timers: the caller passes the clock and owns the timer).
 *
 * A batch is due when it holds `maxRecords` records or `maxMessages` messages, or when its oldest
 * message has waited `lingerMs`. take() hands out at most `maxRecords` records (but always at
 * least one message), so one database transaction stays bounded.
 */

export interface BatchLimits {
  maxRecords: number;
  maxMessages: number;
  lingerMs: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = { maxRecords: 2000, maxMessages: 500, lingerMs: 10 };

interface Entry<M> {
  message: M;
  records: number;
  arrivedAtMs: number;
}

export class BatchAccumulator<M> {
  private entries: Entry<M>[] = [];
  private recordTotal = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly recordCountOf: (message: M) => number,
  ) {}

  get messageCount(): number {
    return this.entries.length;
  }

  get recordCount(): number {
    return this.recordTotal;
  }

  add(message: M, nowMs: number): void {
    this.push(message, nowMs, 'back');
  }

  /** Puts messages back in front (a failed batch is retried before newer messages), keeping their age. */
  requeue(messages: readonly M[], nowMs: number): void {
    for (let i = messages.length - 1; i >= 0; i -= 1) this.push(messages[i] as M, nowMs - this.limits.lingerMs, 'front');
  }

  isDue(nowMs: number): boolean {
    return this.msUntilDue(nowMs) === 0;
  }

  /** 0 when a batch is due now, the wait until the linger expires, or null when empty. */
  msUntilDue(nowMs: number): number | null {
    const oldest = this.entries[0];
    if (oldest === undefined) return null;
    if (this.recordTotal >= this.limits.maxRecords || this.entries.length >= this.limits.maxMessages) return 0;
    return Math.max(0, oldest.arrivedAtMs + this.limits.lingerMs - nowMs);
  }

  /** Removes and returns the next batch, oldest first; empty when nothing is queued. */
  take(): M[] {
    const batch: M[] = [];
    let records = 0;
    while (this.entries.length > 0 && batch.length < this.limits.maxMessages) {
      const next = this.entries[0] as Entry<M>;
      if (batch.length > 0 && records + next.records > this.limits.maxRecords) break;
      this.entries.shift();
      this.recordTotal -= next.records;
      records += next.records;
      batch.push(next.message);
    }
    return batch;
  }

  private push(message: M, arrivedAtMs: number, where: 'front' | 'back'): void {
    const entry = { message, records: this.recordCountOf(message), arrivedAtMs };
    if (where === 'front') this.entries.unshift(entry);
    else this.entries.push(entry);
    this.recordTotal += entry.records;
  }
}
