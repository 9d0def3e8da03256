import { describe, expect, it } from 'vitest';
import { BatchAccumulator, DEFAULT_BATCH_LIMITS, type BatchLimits } from '../../bridge/ingest/batch-accumulator.js';

interface Msg {
  name: string;
  records: number;
  bytes: number;
}

const limits: BatchLimits = { maxRecords: 100, maxMessages: 5, maxBytes: 1000, lingerMs: 10 };
const make = (overrides: Partial<BatchLimits> = {}) =>
  new BatchAccumulator<Msg>({ ...limits, ...overrides }, (m) => ({ records: m.records, bytes: m.bytes }));
const msg = (name: string, records: number, bytes = 10): Msg => ({ name, records, bytes });

describe('BatchAccumulator', () => {
  it('is not due when empty', () => {
    const batches = make();
    expect(batches.msUntilDue(0)).toBeNull();
    expect(batches.isDue(1_000_000)).toBe(false);
    expect(batches.take()).toEqual([]);
  });

  it('lingers for the oldest message, then is due', () => {
    const batches = make();
    batches.add(msg('a', 1), 1000);
    batches.add(msg('b', 1), 1008);
    expect(batches.msUntilDue(1000)).toBe(10);
    expect(batches.msUntilDue(1009)).toBe(1);
    expect(batches.isDue(1010)).toBe(true);
    expect(batches.take().map((m) => m.name)).toEqual(['a', 'b']);
    expect(batches.messageCount).toBe(0);
    expect(batches.recordCount).toBe(0);
  });

  it('is due at once when the records reach maxRecords', () => {
    const batches = make();
    batches.add(msg('a', 60), 0);
    expect(batches.isDue(0)).toBe(false);
    batches.add(msg('b', 40), 0);
    expect(batches.isDue(0)).toBe(true);
  });

  it('is due at once when the messages reach maxMessages', () => {
    const batches = make();
    for (let i = 0; i < 5; i += 1) batches.add(msg(String(i), 0), 0);
    expect(batches.isDue(0)).toBe(true);
    expect(batches.take()).toHaveLength(5);
  });

  it('never hands out more than maxRecords, except one oversized message alone', () => {
    const batches = make();
    batches.add(msg('a', 70), 0);
    batches.add(msg('b', 40), 0);
    batches.add(msg('c', 150), 0);
    batches.add(msg('d', 1), 0);
    expect(batches.take().map((m) => m.name)).toEqual(['a']);
    expect(batches.take().map((m) => m.name)).toEqual(['b']);
    expect(batches.take().map((m) => m.name)).toEqual(['c']);
    expect(batches.take().map((m) => m.name)).toEqual(['d']);
  });

  it('is due at once when the payload bytes reach maxBytes', () => {
    const batches = make();
    batches.add(msg('a', 1, 600), 0);
    expect(batches.isDue(0)).toBe(false);
    batches.add(msg('b', 1, 400), 0);
    expect(batches.byteCount).toBe(1000);
    expect(batches.isDue(0)).toBe(true);
  });

  it('never hands out more than maxBytes, except one oversized message alone', () => {
    const batches = make();
    batches.add(msg('a', 1, 700), 0);
    batches.add(msg('b', 1, 300), 0);
    batches.add(msg('c', 1, 1), 0);
    batches.add(msg('d', 1, 5000), 0);
    batches.add(msg('e', 1, 1), 0);
    expect(batches.take().map((m) => m.name)).toEqual(['a', 'b']);
    expect(batches.take().map((m) => m.name)).toEqual(['c']);
    expect(batches.take().map((m) => m.name)).toEqual(['d']);
    expect(batches.take().map((m) => m.name)).toEqual(['e']);
    expect(batches.byteCount).toBe(0);
  });

  it('defaults to 4 MiB of payload per batch', () => {
    expect(DEFAULT_BATCH_LIMITS.maxBytes).toBe(4 * 1024 * 1024);
  });

  it('never hands out more than maxMessages', () => {
    const batches = make();
    for (let i = 0; i < 7; i += 1) batches.add(msg(String(i), 1), 0);
    expect(batches.take()).toHaveLength(5);
    expect(batches.take()).toHaveLength(2);
  });

  it('puts a failed batch back in front, in order, and due at once', () => {
    const batches = make();
    batches.add(msg('a', 1), 0);
    batches.add(msg('b', 1), 0);
    const failed = batches.take();
    batches.add(msg('c', 1), 500);
    batches.requeue(failed, 500);
    expect(batches.isDue(500)).toBe(true);
    expect(batches.recordCount).toBe(3);
    expect(batches.take().map((m) => m.name)).toEqual(['a', 'b', 'c']);
  });

  it('with zero linger, any message is due at once', () => {
    const batches = make({ lingerMs: 0 });
    batches.add(msg('a', 1), 42);
    expect(batches.isDue(42)).toBe(true);
  });
});
