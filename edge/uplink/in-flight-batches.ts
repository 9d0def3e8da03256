/**
 * Telemetry batches published and waiting for their sync/ack, each with an ack timeout.
 */
export interface InFlightBatch {
  batchId: string;
  recordCount: number;
  /** epoch ms when the batch was published */
  sentAtMs: number;
  /** how long to wait for its sync/ack; the default timeout when absent */
  timeoutMs?: number;
}

export class InFlightBatches {
  readonly #timeoutMs: number;
  readonly #onTimeout: (batch: InFlightBatch) => void;
  readonly #batches = new Map<string, { batch: InFlightBatch; timer: NodeJS.Timeout }>();

  constructor(timeoutMs: number, onTimeout: (batch: InFlightBatch) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
  }

  add(batch: InFlightBatch): void {
    const timer = setTimeout(() => {
      this.#batches.delete(batch.batchId);
      this.#onTimeout(batch);
    }, batch.timeoutMs ?? this.#timeoutMs);
    this.#batches.set(batch.batchId, { batch, timer });
  }

  /** The batch, left in flight; undefined if unknown or already timed out. */
  peek(batchId: string): InFlightBatch | undefined {
    return this.#batches.get(batchId)?.batch;
  }

  /** Removes the batch (its ack arrived) and returns it; undefined if unknown or already timed out. */
  settle(batchId: string): InFlightBatch | undefined {
    const entry = this.#batches.get(batchId);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    this.#batches.delete(batchId);
    return entry.batch;
  }

  get size(): number {
    return this.#batches.size;
  }

  /** readings in the batches in flight */
  get records(): number {
    let total = 0;
    for (const { batch } of this.#batches.values()) total += batch.recordCount;
    return total;
  }

  /** Forgets every batch without firing timeouts (shutdown). */
  clear(): void {
    for (const { timer } of this.#batches.values()) clearTimeout(timer);
    this.#batches.clear();
  }
}
