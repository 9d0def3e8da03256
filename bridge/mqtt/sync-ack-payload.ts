/**
 * The JSON payload of a sync/ack, bounded whatever the device sent (pure).
 *
 * Rejections echo a device's input (record ids, property names in validation reasons, every
 * readable id of an unreadable envelope), so an ack used to be about as large as the message it
 * answered: 1,048,530 bytes for a message of 90k tiny records (issue 7, item 10). A large ack
 * costs the broker and the device what the bad message cost, and one above the broker's payload
 * limit would close the bridge's connection on every reconnect (mqtt.js re-sends a stored QoS 1
 * publish), cutting every device off. So every ack lists at most MAX_SYNC_ACK_REJECTIONS
 * rejections, with ids and reasons clipped to MAX_SYNC_ACK_TEXT_CHARS characters, and says in
 * `rejectedCount` how many there were in all when it lists fewer (G5). The edge marks none of its
 * other readings synced when rejectedCount > rejected.length (edge/store/telemetry-store.ts
 * applyAck): it cannot tell which of them were rejected, so it sends them again.
 *
 * Bound: 100 × (2 × 201 characters, at most 6 bytes each as JSON escapes) + a clipped error and
 * batch id ≈ 250 KB, far below MAX_PAYLOAD_BYTES; a typical ack is a few hundred bytes.
 */
import type { SyncAck } from '../../schemas/messages.js';
import { MAX_SYNC_ACK_REJECTIONS, MAX_SYNC_ACK_TEXT_CHARS } from '../../schemas/limits.js';

/** ids, reasons and the batch id of an ack are clipped to this many characters */
export const CLIPPED_TEXT_CHARS = MAX_SYNC_ACK_TEXT_CHARS;

/** the error text of an ack is clipped to this many characters */
export const CLIPPED_ERROR_CHARS = 1000;

export interface SyncAckPayload {
  payload: string;
  /** true when the ack had to be shortened (rejections left out or texts clipped) */
  shortened: boolean;
}

// G5: an ack that echoes a misbehaving device's input stays small
export function syncAckPayload(ack: SyncAck, maxRejections: number = MAX_SYNC_ACK_REJECTIONS): SyncAckPayload {
  const total = Math.max(ack.rejectedCount ?? 0, ack.rejected.length);
  const listed = ack.rejected.slice(0, maxRejections);
  let shortened = listed.length < ack.rejected.length;
  const clipText = (text: string, chars: number): string => {
    const result = clip(text, chars);
    if (result !== text) shortened = true;
    return result;
  };
  // a batchId that long is not a UUID, so it names no batch of the device anyway
  const batchId = ack.batchId === null ? null : clipText(ack.batchId, CLIPPED_TEXT_CHARS);
  const rejected = listed.map(({ id, reason }) => ({
    id: clipText(id, CLIPPED_TEXT_CHARS),
    reason: clipText(reason, CLIPPED_TEXT_CHARS),
  }));
  const bounded: SyncAck = {
    batchId,
    accepted: ack.accepted,
    rejected,
    ...(total > rejected.length ? { rejectedCount: total } : {}),
    conflicts: ack.conflicts,
    ...(ack.error === undefined ? {} : { error: clipText(ack.error, CLIPPED_ERROR_CHARS) }),
    ...(ack.retryAfterMs === undefined ? {} : { retryAfterMs: ack.retryAfterMs }),
  };
  return { payload: JSON.stringify(bounded), shortened };
}

function clip(text: string, chars: number): string {
  if (text.length <= chars) return text;
  // never cut a surrogate pair in half
  const end = /[\ud800-\udbff]/.test(text.charAt(chars - 1)) ? chars - 1 : chars;
  return `${text.slice(0, end)}…`;
}
