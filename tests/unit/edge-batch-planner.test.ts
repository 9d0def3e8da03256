import { describe, expect, it } from 'vitest';
import { newId } from '../../common/ids.js';
import { MAX_BATCH_BYTES, MAX_BATCH_RECORDS } from '../../schemas/limits.js';
import type { TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';
import { DEFAULT_BATCH_LIMITS, envelopeBytes, planBatch, recordBytes } from '../../edge/store/batch-planner.js';
import { ackTimeoutForSend, mayClaimBatch, triggerForNewReadings } from '../../edge/uplink/in-flight-policy.js';
import { BASE_TIME_MS, makeRecord } from '../helpers/records.js';

describe('planBatch', () => {
  it('takes everything when count and bytes allow', () => {
    expect(planBatch([10, 20, 30], { maxRecords: 5, maxBytes: 1000 }, 50)).toEqual({
      selected: [0, 1, 2],
      oversized: [],
      bytes: 50 + 10 + 21 + 31,
    });
  });

  it('stops at the record count limit', () => {
    expect(planBatch([1, 1, 1, 1], { maxRecords: 2, maxBytes: 1000 }, 10).selected).toEqual([0, 1]);
  });

  it('stops at the first record that would overflow the bytes, keeping age order', () => {
    // 100 + 40 + 41 = 181; the third (60 + comma) would make 242 > 200; the small fourth is not taken out of order
    expect(planBatch([40, 40, 60, 5], { maxRecords: 10, maxBytes: 200 }, 100)).toEqual({
      selected: [0, 1],
      oversized: [],
      bytes: 181,
    });
  });

  it('reports a record that cannot fit even an empty batch as oversized and goes on', () => {
    expect(planBatch([500, 10, 10], { maxRecords: 10, maxBytes: 200 }, 100)).toEqual({
      selected: [1, 2],
      oversized: [0],
      bytes: 121,
    });
  });

  it('plans nothing for no candidates', () => {
    expect(planBatch([], DEFAULT_BATCH_LIMITS, 100)).toEqual({ selected: [], oversized: [], bytes: 100 });
  });

  it('never plans a batch whose JSON exceeds the limits', () => {
    const records = Array.from({ length: 1500 }, (_, index) =>
      makeRecord({ value: index, atMs: BASE_TIME_MS + index, metadata: { note: 'n'.repeat(600 + (index % 600)) } }),
    );
    const batchId = newId();
    const plan = planBatch(records.map(recordBytes), DEFAULT_BATCH_LIMITS, envelopeBytes(batchId));
    const batch: TelemetryBatch = {
      batchId,
      records: plan.selected.map((index) => records[index] as TelemetryRecord),
      pendingCount: 123_456,
    };
    const actualBytes = Buffer.byteLength(JSON.stringify(batch));
    expect(plan.selected.length).toBeGreaterThan(0);
    expect(plan.selected.length).toBeLessThanOrEqual(MAX_BATCH_RECORDS);
    expect(actualBytes).toBeLessThanOrEqual(plan.bytes);
    expect(actualBytes).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    // the byte limit, not the count, was binding here: the next record would not have fitted
    const next = records[plan.selected.length] as TelemetryRecord;
    expect(plan.bytes + recordBytes(next) + 1).toBeGreaterThan(MAX_BATCH_BYTES);
  });
});

describe('in-flight policy', () => {
  const base = {
    connected: true,
    stopping: false,
    inFlight: 0,
    inFlightRecords: 0,
    maxInFlight: 4,
    maxBatchRecords: 1000,
  };

  it('claims while connected, running and below the in-flight limit', () => {
    expect(mayClaimBatch(base)).toBe(true);
    expect(mayClaimBatch({ ...base, inFlight: 3, inFlightRecords: 3000 })).toBe(true);
    expect(mayClaimBatch({ ...base, inFlight: 4, inFlightRecords: 4000 })).toBe(false);
    expect(mayClaimBatch({ ...base, connected: false })).toBe(false);
    expect(mayClaimBatch({ ...base, stopping: true })).toBe(false);
  });

  it('counts the limit in readings, so a trickle of small batches does not wait for acks to free a slot', () => {
    expect(mayClaimBatch({ ...base, inFlight: 4, inFlightRecords: 40 })).toBe(true);
    expect(mayClaimBatch({ ...base, inFlight: 15, inFlightRecords: 150 })).toBe(true);
  });

  it('still bounds the messages in flight when every batch is small', () => {
    expect(mayClaimBatch({ ...base, inFlight: 16, inFlightRecords: 16 })).toBe(false);
  });

  it('never claims past the readings budget, whatever the batch count', () => {
    expect(mayClaimBatch({ ...base, inFlight: 2, inFlightRecords: 4000 })).toBe(false);
    expect(mayClaimBatch({ ...base, inFlight: 2, inFlightRecords: 3999 })).toBe(true);
  });

  it('sends a full batch at once and lingers for less', () => {
    expect(triggerForNewReadings(MAX_BATCH_RECORDS, MAX_BATCH_RECORDS)).toBe('now');
    expect(triggerForNewReadings(MAX_BATCH_RECORDS - 1, MAX_BATCH_RECORDS)).toBe('linger');
  });
});

describe('ack timeout per send of a batch', () => {
  it('doubles with every re-send of the same batch, up to 16 times the base', () => {
    expect([1, 2, 3, 4, 5, 6, 10].map((send) => ackTimeoutForSend(30_000, send))).toEqual([
      30_000, 60_000, 120_000, 240_000, 480_000, 480_000, 480_000,
    ]);
  });

  it('stays within what a Node timer can hold', () => {
    expect(ackTimeoutForSend(2_000_000_000, 3)).toBe(2_147_483_647);
  });
});
