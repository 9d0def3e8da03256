/**
 * What a sync/ack means for the sync log (pure): success when nothing was rejected, partial when
 * some readings were, failed when every reading of the batch was rejected.
 */
import type { SyncAck } from '../../schemas/messages.js';
import type { AckOutcome, SyncLogEntry } from './telemetry-store.js';

/** How many rejections are spelled out in the sync log message. */
const LISTED_REJECTIONS = 5;

export function describeRejections(rejected: SyncAck['rejected']): string {
  const listed = rejected.slice(0, LISTED_REJECTIONS).map((rejection) => `${rejection.id}: ${rejection.reason}`);
  const more = rejected.length > LISTED_REJECTIONS ? `; … and ${rejected.length - LISTED_REJECTIONS} more` : '';
  return `${rejected.length} rejected by the bridge: ${listed.join('; ')}${more}`;
}

export function syncLogStatusForAck(ack: SyncAck, outcome: AckOutcome): SyncLogEntry['status'] {
  if (ack.rejected.length === 0) return 'success';
  return outcome.synced === 0 ? 'failed' : 'partial';
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
    errorMessage: status === 'success' ? null : describeRejections(ack.rejected),
  };
}
