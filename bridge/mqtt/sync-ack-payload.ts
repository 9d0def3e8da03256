/**
 * The JSON payload of a sync/ack, kept within the broker's payload limit (pure).
 *
 * The broker refuses a larger publish by closing the connection, and mqtt.js sends a stored QoS 1
 * publish again on every reconnect: one oversized ack would cut the bridge off the broker for
 * good, for every device. Only a misbehaving device can cause one, because rejections echo its
 * input (record ids, property names in validation reasons, thousands of records in an unreadable
 * envelope). So an ack that fits is sent unchanged; a larger one gets its texts clipped and, if it
 * still does not fit, lists only the first rejections and says how many it left out.
 */
import type { SyncAck } from '../../schemas/messages.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';

/** ids, reasons and the error of an oversized ack are clipped to this many characters */
export const CLIPPED_TEXT_CHARS = 200;

export interface SyncAckPayload {
  payload: string;
  /** true when the ack had to be shortened to fit */
  shortened: boolean;
}

// G5: an ack that echoes a misbehaving device's input still fits the broker's payload limit
export function syncAckPayload(ack: SyncAck, maxBytes: number = MAX_PAYLOAD_BYTES): SyncAckPayload {
  const full = JSON.stringify(ack);
  if (Buffer.byteLength(full) <= maxBytes) return { payload: full, shortened: false };

  // a batchId that long is not a UUID, so it names no batch of the device anyway
  const batchId = ack.batchId === null ? null : clip(ack.batchId);
  const rejected = ack.rejected.map(({ id, reason }) => ({ id: clip(id), reason: clip(reason) }));
  const error = ack.error === undefined ? undefined : clip(ack.error);
  const listing = (count: number): string => {
    const omitted = rejected.length - count;
    const note =
      omitted === 0 ? error : `${error ?? 'too many rejections to list'} (${omitted} more rejected records not listed)`;
    return JSON.stringify({
      ...ack,
      batchId,
      rejected: rejected.slice(0, count),
      ...(note === undefined ? {} : { error: note }),
    });
  };
  // the largest number of listed rejections that fits (with 0 the ack is a few KB at most)
  let fits = 0;
  let tooMany = rejected.length + 1;
  while (tooMany - fits > 1) {
    const middle = Math.floor((fits + tooMany) / 2);
    if (Buffer.byteLength(listing(middle)) <= maxBytes) fits = middle;
    else tooMany = middle;
  }
  return { payload: listing(fits), shortened: true };
}

function clip(text: string): string {
  if (text.length <= CLIPPED_TEXT_CHARS) return text;
  // never cut a surrogate pair in half
  const end = /[\ud800-\udbff]/.test(text.charAt(CLIPPED_TEXT_CHARS - 1)) ? CLIPPED_TEXT_CHARS - 1 : CLIPPED_TEXT_CHARS;
  return `${text.slice(0, end)}…`;
}
