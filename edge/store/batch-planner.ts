/**
 * Chooses which of the oldest pending readings go into the next telemetry batch (pure).
 *
 * Candidates come oldest first; the plan takes the longest prefix that keeps the batch within the
 * record count and the JSON byte size (envelope included). A reading too large to fit even an
 * otherwise empty batch can never be sent; it is reported as oversized (the store marks it
 * failed) instead of blocking every reading behind it.
 */
import { MAX_BATCH_BYTES, MAX_BATCH_RECORDS } from '../../schemas/limits.js';
import type { TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';

export interface BatchLimits {
  maxRecords: number;
  maxBytes: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = { maxRecords: MAX_BATCH_RECORDS, maxBytes: MAX_BATCH_BYTES };

export interface BatchPlan {
  /** candidate indexes that go into the batch, in order */
  selected: number[];
  /** candidate indexes that are larger than any batch may be */
  oversized: number[];
  /** the batch's JSON size in bytes (at most), envelope included */
  bytes: number;
}

/** Bytes of JSON a record adds to a batch (without the separating comma). */
export function recordBytes(record: TelemetryRecord): number {
  return Buffer.byteLength(JSON.stringify(record), 'utf8');
}

/**
 * Bytes of the batch envelope without records: {"batchId":"…","records":[],"pendingCount":N}.
 * Counted with the largest possible pendingCount so the estimate is an upper bound.
 */
export function envelopeBytes(batchId: string): number {
  const empty: TelemetryBatch = { batchId, records: [], pendingCount: Number.MAX_SAFE_INTEGER };
  return Buffer.byteLength(JSON.stringify(empty), 'utf8');
}

export function planBatch(candidateSizes: readonly number[], limits: BatchLimits, envelope: number): BatchPlan {
  const selected: number[] = [];
  const oversized: number[] = [];
  let bytes = envelope;
  for (let index = 0; index < candidateSizes.length; index += 1) {
    if (selected.length >= limits.maxRecords) break;
    const size = candidateSizes[index] ?? 0;
    if (envelope + size > limits.maxBytes) {
      oversized.push(index);
      continue;
    }
    const added = selected.length === 0 ? size : size + 1; // a comma separates records
    if (bytes + added > limits.maxBytes) break;
    selected.push(index);
    bytes += added;
  }
  return { selected, oversized, bytes };
}
