/**
 * What a sync/ack means for the sync log (pure): success when nothing was rejected, partial when
 * some readings were, failed when every reading of the batch was rejected. An ack that lists fewer
 * rejections than its rejectedCount (schemas/messages.ts SyncAck) is partial: its unlisted readings
 * went back to pending (edge/store/telemetry-store.ts applyAck), so nothing of it is a success yet.
 */
import type { SyncAck } from '../../schemas/messages.js';
import type { AckOutcome, SyncLogEntry } from './telemetry-store.js';

/** How many rejections are spelled out in the sync log message. */
const LISTED_REJECTIONS = 5;

/** How many records the bridge rejected in all (the ack may list only the first of them). */
export function rejectedTotal(ack: SyncAck): number {
  return Math.max(ack.rejectedCount ?? 0, ack.rejected.length);
}

export function describeRejections(ack: SyncAck): string {
  const { rejected } = ack;
  const total = rejectedTotal(ack);
  const listed = rejected.slice(0, LISTED_REJECTIONS).map((rejection) => `${rejection.id}: ${rejection.reason}`);
  const more = total > LISTED_REJECTIONS ? `; … and ${total - LISTED_REJECTIONS} more` : '';
  const unnamed =
    total > rejected.length
      ? ` (${total - rejected.length} not named by the ack: the batch's other readings are sent again)`
      : '';
  return `${total} rejected by the bridge${unnamed}: ${listed.join('; ')}${more}`;
}

export function syncLogStatusForAck(ack: SyncAck, outcome: AckOutcome): SyncLogEntry['status'] {
  if (rejectedTotal(ack) === 0) return 'success';
  return outcome.synced === 0 && (outcome.released ?? 0) === 0 ? 'failed' : 'partial';
}

export function syncLogEntryForAck(
  ack: SyncAck,
  outcome: AckOutcome,
  startedAtMs: number,
  completedAtMs: number,
): SyncLogEntry {
  const status = syncLogStatusForAck(ack, outcome);
  return {
    syncType: 'upstream',
    startedAt: startedAtMs,
    completedAt: completedAtMs,
    recordsCount: outcome.synced + outcome.failed,
    status,
    errorMessage: status === 'success' ? null : describeRejections(ack),
  };
}
