import { describe, expect, it } from 'vitest';
import type { BatchLimits } from '../../bridge/ingest/batch-accumulator.js';
import { FairScheduler, type HoldLimits } from '../../bridge/ingest/fair-scheduler.js';

interface Message {
  device: string;
  n: number;
  records: number;
  bytes: number;
}

const BATCH: BatchLimits = { maxRecords: 2000, maxMessages: 500, maxBytes: 4 * 1024 * 1024, lingerMs: 10 };
const HOLD: HoldLimits = { maxMessages: 100, maxBytes: 10_000_000, maxDeviceMessages: 10, maxDeviceBytes: 3_000_000 };

function scheduler(batch: Partial<BatchLimits> = {}, hold: Partial<HoldLimits> = {}) {
  return new FairScheduler<Message>({ ...BATCH, ...batch }, { ...HOLD, ...hold }, (m) => m);
}
const msg = (device: string, n: number, records = 1000, bytes = 200_000): Message => ({ device, n, records, bytes });
const names = (batch: Message[]) => batch.map((m) => `${m.device}${m.n}`);

describe('FairScheduler', () => {
  it("puts a newly arrived device's message into the next batch, however long another device's backlog", () => {
    const s = scheduler();
    for (let n = 1; n <= 8; n += 1) s.add(msg('F', n), 0);
    s.add(msg('P', 1, 5, 1000), 5);
    const flood = s.take();
    expect(names(flood)).toEqual(['F1', 'F2']);
    // the flooder is busy: the next writer takes the small message at once, alone
    expect(s.msUntilDue(15)).toBe(0);
    expect(names(s.take())).toEqual(['P1']);
  });

  it("never puts a device's small message into a transaction with another device's large one", () => {
    const s = scheduler();
    s.add(msg('F', 1, 1000, 600_000), 0);
    s.add(msg('P', 1, 10, 2000), 0);
    s.add(msg('Q', 1, 10, 2000), 0);
    const large = s.take();
    expect(names(large)).toEqual(['F1']);
    expect(names(s.take())).toEqual(['P1', 'Q1']);
  });

  it('serves devices round-robin, one message each per round, starting after the device served last', () => {
    const s = scheduler({ maxMessages: 3 });
    for (let n = 1; n <= 3; n += 1) for (const d of ['A', 'B', 'C', 'D']) s.add(msg(d, n, 1, 10), 0);
    const first = s.take();
    expect(names(first)).toEqual(['A1', 'B1', 'C1']);
    s.done(first);
    expect(names(s.take())).toEqual(['D1', 'A2', 'B2']);
  });

  it('keeps a device in at most one batch being written: the next batch takes everyone else', () => {
    const s = scheduler({ maxRecords: 1000 });
    for (let n = 1; n <= 5; n += 1) s.add(msg('F', n), 0);
    const flood = s.take();
    expect(names(flood)).toEqual(['F1']);
    expect(s.msUntilDue(100)).toBeNull(); // only the busy device has messages
    s.add(msg('P', 1, 5, 1000), 100);
    expect(s.msUntilDue(100)).toBe(10);
    expect(s.msUntilDue(110)).toBe(0);
    expect(names(s.take())).toEqual(['P1']);
    s.done(flood);
    expect(names(s.take())).toEqual(['F2']);
  });

  it('is due at once when the ready messages fill a batch, after the linger otherwise', () => {
    const s = scheduler();
    expect(s.msUntilDue(0)).toBeNull();
    s.add(msg('A', 1, 10, 100), 1000);
    expect(s.msUntilDue(1004)).toBe(6);
    s.add(msg('B', 1, 1990, 100), 1004);
    expect(s.msUntilDue(1004)).toBe(0);
  });

  it('refuses a message over a per-device or per-bridge bound, but always admits a device that holds nothing', () => {
    const s = scheduler({}, { maxDeviceMessages: 2, maxDeviceBytes: 500_000, maxMessages: 4, maxBytes: 1_000_000 });
    expect(s.admit('A', 5_000_000)).toEqual({ ok: true }); // an empty bridge takes even one huge message
    s.add(msg('A', 1, 1, 300_000), 0);
    expect(s.admit('A', 300_000)).toEqual({ ok: false, reason: 'device-bytes' });
    s.add(msg('A', 2, 1, 100_000), 0);
    expect(s.admit('A', 1)).toEqual({ ok: false, reason: 'device-messages' });
    expect(s.admit('B', 700_000)).toEqual({ ok: false, reason: 'bridge-bytes' });
    s.add(msg('B', 1, 1, 100), 0);
    s.add(msg('C', 1, 1, 100), 0);
    expect(s.admit('D', 1)).toEqual({ ok: false, reason: 'bridge-messages' });
    expect([s.heldMessages, s.heldBytes]).toEqual([4, 400_200]);
  });

  it('holds a message until it is settled, also while it is being written; requeued messages come first', () => {
    const s = scheduler({ maxMessages: 1 });
    const [a1, a2] = [msg('A', 1, 1, 10), msg('A', 2, 1, 10)];
    s.add(a1, 0);
    s.add(a2, 0);
    const batch = s.take();
    expect(batch).toEqual([a1]);
    expect([s.heldMessages, s.queuedMessages]).toEqual([2, 1]);
    s.requeue(batch, 50); // the write failed
    s.done(batch);
    expect(s.take()).toEqual([a1]);
    s.settle(a1);
    s.done([a1]);
    expect([s.heldMessages, s.heldBytes]).toEqual([1, 10]);
    expect(s.take()).toEqual([a2]);
    s.settle(a2);
    s.done([a2]);
    expect([s.heldMessages, s.heldBytes, s.queuedMessages]).toEqual([0, 0, 0]);
    expect(s.msUntilDue(100)).toBeNull();
  });

  it('counts a reserved message (being parsed) against every bound until it is added or given back', () => {
    const s = scheduler({}, { maxDeviceMessages: 2, maxDeviceBytes: 500_000, maxMessages: 3, maxBytes: 1_000_000 });
    s.reserve('A', 300_000);
    expect(s.admit('A', 300_000)).toEqual({ ok: false, reason: 'device-bytes' });
    s.reserve('A', 100_000);
    expect(s.admit('A', 1)).toEqual({ ok: false, reason: 'device-messages' });
    s.reserve('B', 100);
    expect(s.admit('C', 1)).toEqual({ ok: false, reason: 'bridge-messages' });
    expect([s.heldMessages, s.heldBytes, s.queuedMessages]).toEqual([3, 400_100, 0]);
    expect(s.take()).toEqual([]); // nothing to write while it is only reserved
    const a1 = msg('A', 1, 1, 300_000);
    s.add(a1, 0, true); // added: held once, not twice
    s.unreserve('A', 100_000); // unreadable: given back
    s.unreserve('B', 100);
    expect([s.heldMessages, s.heldBytes, s.queuedMessages]).toEqual([1, 300_000, 1]);
    expect(s.take()).toEqual([a1]);
    s.settle(a1);
    s.done([a1]);
    expect([s.heldMessages, s.heldBytes, s.queuedMessages]).toEqual([0, 0, 0]);
    expect(s.admit('A', 5_000_000)).toEqual({ ok: true });
  });

  it('bounds every batch in records and bytes but always hands out at least one message', () => {
    const s = scheduler({ maxRecords: 1500, maxBytes: 1_000_000 });
    s.add(msg('A', 1, 5000, 50), 0);
    s.add(msg('B', 1, 1000, 2_000_000), 0);
    expect(names(s.take())).toEqual(['A1']);
    expect(names(s.take())).toEqual(['B1']);
  });
});
