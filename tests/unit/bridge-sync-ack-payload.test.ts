import { describe, expect, it } from 'vitest';
import { CLIPPED_TEXT_CHARS, syncAckPayload } from '../../bridge/mqtt/sync-ack-payload.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { SyncAck } from '../../schemas/messages.js';

const BATCH = '7f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';
const bytes = (text: string) => Buffer.byteLength(text);

describe('syncAckPayload', () => {
  it('sends an ack that fits exactly as it is', () => {
    const ack: SyncAck = {
      batchId: BATCH,
      accepted: 2,
      rejected: [{ id: 'a', reason: 'x'.repeat(5000) }],
      conflicts: 1,
    };
    expect(syncAckPayload(ack)).toEqual({ payload: JSON.stringify(ack), shortened: false });
  });

  it('clips long ids and reasons of an oversized ack and keeps every rejection when that is enough', () => {
    const rejected = Array.from({ length: 1000 }, (_, i) => ({
      id: `${i}`.padEnd(1000, 'i'),
      reason: `bad ${'r'.repeat(1000)}`,
    }));
    const { payload, shortened } = syncAckPayload({ batchId: BATCH, accepted: 0, rejected, conflicts: 0 });
    const sent = JSON.parse(payload) as SyncAck;
    expect(shortened).toBe(true);
    expect(bytes(payload)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(sent.batchId).toBe(BATCH);
    expect(sent.rejected).toHaveLength(1000);
    expect(sent.rejected[7]?.id).toBe(`${'7'.padEnd(CLIPPED_TEXT_CHARS, 'i')}…`);
    expect(sent.error).toBeUndefined();
  });

  it('lists as many rejections as fit, and says how many it left out', () => {
    const reason = 'invalid telemetry batch: /records must NOT have more than 1000 items';
    const rejected = Array.from({ length: 100_000 }, () => ({ id: '', reason }));
    const { payload } = syncAckPayload({ batchId: BATCH, accepted: 0, rejected, conflicts: 0, error: reason });
    const sent = JSON.parse(payload) as SyncAck;
    expect(bytes(payload)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(bytes(payload)).toBeGreaterThan(MAX_PAYLOAD_BYTES - 200);
    expect(sent.error).toBe(`${reason} (${100_000 - sent.rejected.length} more rejected records not listed)`);
  });

  it('fits whatever a device echoes: escaped control characters, a huge batch id, a huge error', () => {
    const nasty = '\u0001'.repeat(300_000);
    const rejected = Array.from({ length: 2000 }, () => ({ id: nasty.slice(0, 1000), reason: nasty.slice(0, 1000) }));
    const { payload } = syncAckPayload({ batchId: nasty, accepted: 0, rejected, conflicts: 0, error: nasty });
    expect(bytes(payload)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect((JSON.parse(payload) as SyncAck).batchId).toHaveLength(CLIPPED_TEXT_CHARS + 1);
  });

  it('never splits a surrogate pair when clipping', () => {
    const id = `${'i'.repeat(CLIPPED_TEXT_CHARS - 1)}\ud83d\ude00tail`;
    const { payload: roomy } = syncAckPayload(
      { batchId: BATCH, accepted: 0, rejected: [{ id, reason: 'r'.repeat(2000) }], conflicts: 0 },
      1000,
    );
    expect((JSON.parse(roomy) as SyncAck).rejected[0]?.id).toBe(`${'i'.repeat(CLIPPED_TEXT_CHARS - 1)}…`);
  });
});
