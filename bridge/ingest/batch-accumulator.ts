/**
 * Pure batching of validated telemetry messages from many devices into database batches
 * (no timers: the caller passes the clock and owns the timer).
 *
 * A batch is due when it holds `maxRecords` records, `maxMessages` messages or `maxBytes` payload
 * bytes, or when its oldest message has waited `lingerMs`. take() hands out at most `maxRecords`
 * records and `maxBytes` payload bytes (but always at least one message: a single message over a
 * limit forms a batch of its own), so one database transaction stays bounded in rows and in size.
 */

export interface BatchLimits {
  maxRecords: number;
  maxMessages: number;
  /** payload bytes of the MQTT messages in one batch */
  maxBytes: number;
  lingerMs: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = {
  maxRecords: 2000,
  maxMessages: 500,
  maxBytes: 4 * 1024 * 1024,
  lingerMs: 10,
};

/** What a message counts against the limits. */
export interface MessageSize {
  records: number;
  bytes: number;
}

interface Entry<M> extends MessageSize {
  message: M;
  arrivedAtMs: number;
}

export class BatchAccumulator<M> {
  private entries: Entry<M>[] = [];
  private recordTotal = 0;
  private byteTotal = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly sizeOf: (message: M) => MessageSize,
  ) {}

  get messageCount(): number {
    return this.entries.length;
  }

  get recordCount(): number {
    return this.recordTotal;
  }

  get byteCount(): number {
    return this.byteTotal;
  }

  add(message: M, nowMs: number): void {
    this.push(message, nowMs, 'back');
  }

  /** Puts messages back in front (a failed batch is retried before newer messages), keeping their age. */
  requeue(messages: readonly M[], nowMs: number): void {
    for (let i = messages.length - 1; i >= 0; i -= 1)
      this.push(messages[i] as M, nowMs - this.limits.lingerMs, 'front');
  }

  isDue(nowMs: number): boolean {
    return this.msUntilDue(nowMs) === 0;
  }

  /** 0 when a batch is due now, the wait until the linger expires, or null when empty. */
  msUntilDue(nowMs: number): number | null {
    const oldest = this.entries[0];
    if (oldest === undefined) return null;
    const { maxRecords, maxMessages, maxBytes } = this.limits;
    if (this.recordTotal >= maxRecords || this.entries.length >= maxMessages || this.byteTotal >= maxBytes) return 0;
    return Math.max(0, oldest.arrivedAtMs + this.limits.lingerMs - nowMs);
  }

  /** Removes and returns the next batch, oldest first; empty when nothing is queued. */
  take(): M[] {
    const batch: M[] = [];
    let records = 0;
    let bytes = 0;
    while (this.entries.length > 0 && batch.length < this.limits.maxMessages) {
      const next = this.entries[0] as Entry<M>;
      if (
        batch.length > 0 &&
        (records + next.records > this.limits.maxRecords || bytes + next.bytes > this.limits.maxBytes)
      )
        break;
      this.entries.shift();
      this.recordTotal -= next.records;
      this.byteTotal -= next.bytes;
      records += next.records;
      bytes += next.bytes;
      batch.push(next.message);
    }
    return batch;
  }

  private push(message: M, arrivedAtMs: number, where: 'front' | 'back'): void {
    const { records, bytes } = this.sizeOf(message);
    const entry = { message, records, bytes, arrivedAtMs };
    if (where === 'front') this.entries.unshift(entry);
    else this.entries.push(entry);
    this.recordTotal += entry.records;
    this.byteTotal += entry.bytes;
  }
}
