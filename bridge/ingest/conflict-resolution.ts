/**
 * Pure conflict resolution for one database batch of telemetry (no I/O).
 *
 * Rule: last-write-wins by version, per reading id.
 *   no stored row                         -> insert
 *   stored row of another device          -> reject (a device cannot overwrite another's reading)
 *   incoming version > stored             -> update (incoming wins)
 *   incoming version < stored             -> stale: stored row kept, conflict logged
 *   same version, same content hash       -> duplicate: nothing to write (a redelivery), accepted
 *   same version, different content hash  -> tie: the larger content hash wins, whichever arrived
 *                                            first (order-independent); conflict logged
 *
 * Records are resolved in arrival order against the stored rows AND the winners chosen earlier
 * in the same batch, exactly as if each had been its own transaction. So the same id twice in a
 * batch ends as at most one upsert row (INSERT … ON CONFLICT DO UPDATE cannot touch a row twice
 * in one statement). The SQL upsert's WHERE guard encodes the same rule (see telemetry-writer).
 *
 * conflict_log ids are name-based on (record id, both versions, both hashes; for a tie the two
 * hashes in sorted order), so a redelivered message logs the same conflict only once, and so does
 * the first reading of a tie arriving again after the second.
 */
import { nameBasedId } from '../../common/ids.js';
import type { RejectedRecord } from '../../schemas/messages.js';
import { telemetryRowJson, type TelemetryRow, type TelemetryRowJson } from './telemetry-row.js';

export type RecordDecision =
  | { kind: 'insert' }
  | { kind: 'update' }
  | { kind: 'duplicate' }
  | { kind: 'stale' }
  | { kind: 'tie'; incomingWins: boolean }
  | { kind: 'reject'; reason: string };

export type ConflictType = 'stale-version' | 'version-tie';

export interface ConflictLogEntry {
  conflictId: string;
  /** the device that sent the losing or contested reading */
  deviceId: string;
  recordId: string;
  conflictType: ConflictType;
  /** the device's reading */
  localValue: TelemetryRowJson;
  /** the control plane's reading (stored, or an earlier winner in the same batch) */
  remoteValue: TelemetryRowJson;
  resolvedValue: TelemetryRowJson;
  resolutionStrategy: 'last-write-wins';
}

export interface IncomingMessage {
  deviceId: string;
  records: readonly TelemetryRow[];
}

/** Per message, what goes into its sync/ack and sync_status. */
export interface MessageOutcome {
  /** records now stored or resolved: insert, update, duplicate, stale, tie */
  accepted: number;
  rejected: RejectedRecord[];
  /** stale + tie; each has a conflict_log entry */
  conflicts: number;
  /** rows that did not exist before */
  inserted: number;
}

export interface BatchResolution {
  /** at most one row per id, to INSERT … ON CONFLICT DO UPDATE */
  upserts: TelemetryRow[];
  conflicts: ConflictLogEntry[];
  /** one per incoming message, same order */
  messages: MessageOutcome[];
  /** one per incoming record, grouped like the input */
  decisions: RecordDecision[][];
}

export const RECORD_OF_ANOTHER_DEVICE = 'record id belongs to another device';

const CONFLICT_ID_NAMESPACE = 'mqtt-edge-sync/conflict-log';

// G4: idempotent by id, the higher version wins, a tie goes to the larger content hash
/** The rule for one incoming record against the current row with its id (if any). */
export function decide(incoming: TelemetryRow, current: TelemetryRow | undefined): RecordDecision {
  if (current === undefined) return { kind: 'insert' };
  if (current.deviceId !== incoming.deviceId) return { kind: 'reject', reason: RECORD_OF_ANOTHER_DEVICE };
  if (incoming.version > current.version) return { kind: 'update' };
  if (incoming.version < current.version) return { kind: 'stale' };
  if (incoming.contentHash === current.contentHash) return { kind: 'duplicate' };
  return { kind: 'tie', incomingWins: incoming.contentHash > current.contentHash };
}

export function resolveBatch(
  messages: readonly IncomingMessage[],
  stored: ReadonlyMap<string, TelemetryRow>,
): BatchResolution {
  const current = new Map(stored);
  const upserts = new Map<string, TelemetryRow>();
  const conflicts: ConflictLogEntry[] = [];
  const outcomes: MessageOutcome[] = [];
  const decisions: RecordDecision[][] = [];

  for (const message of messages) {
    const outcome: MessageOutcome = { accepted: 0, rejected: [], conflicts: 0, inserted: 0 };
    const messageDecisions: RecordDecision[] = [];
    for (const record of message.records) {
      const existing = current.get(record.id);
      const decision = decide(record, existing);
      messageDecisions.push(decision);
      if (decision.kind === 'reject') {
        outcome.rejected.push({ id: record.id, reason: decision.reason });
        continue;
      }
      outcome.accepted += 1;
      const incomingWins =
        decision.kind === 'insert' || decision.kind === 'update' || (decision.kind === 'tie' && decision.incomingWins);
      if (decision.kind === 'insert') outcome.inserted += 1;
      if (incomingWins) {
        current.set(record.id, record);
        upserts.set(record.id, record);
      }
      if ((decision.kind === 'stale' || decision.kind === 'tie') && existing !== undefined) {
        outcome.conflicts += 1;
        conflicts.push(
          conflictEntry(decision.kind === 'stale' ? 'stale-version' : 'version-tie', record, existing, incomingWins),
        );
      }
    }
    outcomes.push(outcome);
    decisions.push(messageDecisions);
  }
  return { upserts: [...upserts.values()], conflicts, messages: outcomes, decisions };
}

function conflictEntry(
  conflictType: ConflictType,
  local: TelemetryRow,
  remote: TelemetryRow,
  localWins: boolean,
): ConflictLogEntry {
  // A tie is one conflict between two readings, whichever of them arrives (again) second: its id
  // does not depend on which side is local. A stale reading is its own event against each newer row.
  const sides = [local.contentHash, remote.contentHash];
  const name =
    conflictType === 'version-tie'
      ? [local.id, local.version, ...sides.sort()].join('|')
      : [local.id, local.version, local.contentHash, remote.version, remote.contentHash].join('|');
  return {
    conflictId: nameBasedId(CONFLICT_ID_NAMESPACE, name),
    deviceId: local.deviceId,
    recordId: local.id,
    conflictType,
    localValue: telemetryRowJson(local),
    remoteValue: telemetryRowJson(remote),
    resolvedValue: telemetryRowJson(localWins ? local : remote),
    resolutionStrategy: 'last-write-wins',
  };
}
