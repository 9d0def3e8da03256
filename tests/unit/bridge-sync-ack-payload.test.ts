import { describe, expect, it } from 'vitest';
import { CLIPPED_ERROR_CHARS, CLIPPED_TEXT_CHARS, syncAckPayload } from '../../bridge/mqtt/sync-ack-payload.js';
import { MAX_PAYLOAD_BYTES, MAX_SYNC_ACK_REJECTIONS } from '../../schemas/limits.js';
import type { SyncAck } from '../../schemas/messages.js';
import { checkSyncAck } from '../../schemas/validators.js';

const BATCH = '7f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';
const bytes = (text: string) => Buffer.byteLength(text);
const sent = (payload: string): SyncAck => {
  const checked = checkSyncAck(JSON.parse(payload));
  if (!checked.ok) throw new Error(checked.reason);
  return checked.value;
};

describe('syncAckPayload', () => {
  it('sends an ordinary ack exactly as it is', () => {
    const ack: SyncAck = {
      batchId: BATCH,
      accepted: 2,
      rejected: [{ id: 'a', reason: 'bad' }],
      conflicts: 1,
    };
    expect(syncAckPayload(ack)).toEqual({ payload: JSON.stringify(ack), shortened: false });
    const later: SyncAck = { batchId: BATCH, accepted: 0, rejected: [], conflicts: 0, retryAfterMs: 1000 };
    expect(sent(syncAckPayload(later).payload)).toEqual(later);
  });

  it('lists the first 100 rejections and counts them all in rejectedCount (90k tiny records: a few KB, not 1 MB)', () => {
    const reason = 'invalid telemetry batch: /records must NOT have more than 1000 items';
    const rejected = Array.from({ length: 90_000 }, (_, i) => ({ id: `${i}`, reason }));
    const { payload, shortened } = syncAckPayload({
      batchId: BATCH,
      accepted: 0,
      rejected,
      conflicts: 0,
      error: reason,
    });
    const ack = sent(payload);
    expect(shortened).toBe(true);
    expect(ack.rejected).toEqual(rejected.slice(0, MAX_SYNC_ACK_REJECTIONS));
    expect(ack.rejectedCount).toBe(90_000);
    expect(ack.error).toBe(reason);
    expect(bytes(payload)).toBeLessThan(12 * 1024);
  });

  it('keeps a rejectedCount it was given (the pipeline already bounded the list)', () => {
    const ack = sent(
      syncAckPayload({
        batchId: BATCH,
        accepted: 3,
        rejected: [{ id: 'a', reason: 'r' }],
        rejectedCount: 7,
        conflicts: 0,
      }).payload,
    );
    expect(ack).toMatchObject({ rejected: [{ id: 'a', reason: 'r' }], rejectedCount: 7 });
  });

  it('clips long ids, reasons, batch id and error', () => {
    const rejected = Array.from({ length: 10 }, (_, i) => ({ id: `${i}`.padEnd(1000, 'i'), reason: 'r'.repeat(1000) }));
    const { payload, shortened } = syncAckPayload({
      batchId: 'b'.repeat(5000),
      accepted: 0,
      rejected,
      conflicts: 0,
      error: 'e'.repeat(5000),
    });
    const ack = sent(payload);
    expect(shortened).toBe(true);
    expect(ack.rejected).toHaveLength(10);
    expect(ack.rejectedCount).toBeUndefined();
    expect(ack.rejected[7]?.id).toBe(`${'7'.padEnd(CLIPPED_TEXT_CHARS, 'i')}…`);
    expect(ack.batchId).toHaveLength(CLIPPED_TEXT_CHARS + 1);
    expect(ack.error).toHaveLength(CLIPPED_ERROR_CHARS + 1);
  });

  it('stays far below the broker payload limit whatever a device echoes (escaped control characters)', () => {
    const nasty = '\u0001'.repeat(300_000);
    const rejected = Array.from({ length: 20_000 }, () => ({ id: nasty.slice(0, 1000), reason: nasty.slice(0, 1000) }));
    const { payload } = syncAckPayload({ batchId: nasty, accepted: 0, rejected, conflicts: 0, error: nasty });
    expect(bytes(payload)).toBeLessThan(MAX_PAYLOAD_BYTES / 4);
    expect(sent(payload).rejectedCount).toBe(20_000);
  });

  it('never splits a surrogate pair when clipping', () => {
    const id = `${'i'.repeat(CLIPPED_TEXT_CHARS - 1)}\ud83d\ude00tail`;
    const { payload } = syncAckPayload({ batchId: BATCH, accepted: 0, rejected: [{ id, reason: 'r' }], conflicts: 0 });
    expect(sent(payload).rejected[0]?.id).toBe(`${'i'.repeat(CLIPPED_TEXT_CHARS - 1)}…`);
  });
});
