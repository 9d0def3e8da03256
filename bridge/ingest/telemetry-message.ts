/**
 * Reads one devices/{id}/telemetry message (pure): the device id comes ONLY from the topic (the
 * broker's ACL lets a device publish only under its own certificate's id); the envelope must be
 * valid as a whole; records are checked one by one, so a bad record is rejected alone.
 */
import type { RejectedRecord, SyncAck } from '../../schemas/messages.js';
import { isDeviceId, parseDeviceTopic } from '../../schemas/topics.js';
import { checkTelemetryBatchEnvelope, checkTelemetryRecord, parseJson } from '../../schemas/validators.js';
import { telemetryRowFromRecord, type TelemetryRow } from './telemetry-row.js';

export type ParsedTelemetryMessage =
  /** goes to the database; `invalid` records are reported as rejected */
  | {
      kind: 'batch';
      deviceId: string;
      batchId: string;
      records: TelemetryRow[];
      invalid: RejectedRecord[];
      pendingCount: number | null;
    }
  /** cannot be stored at all: answer with this ack (it carries `error`) */
  | { kind: 'unreadable'; deviceId: string; ack: SyncAck }
  /** not a device's telemetry topic: nobody to answer */
  | { kind: 'not-telemetry'; reason: string };

export function parseTelemetryMessage(topic: string, payload: Buffer): ParsedTelemetryMessage {
  const parsedTopic = parseDeviceTopic(topic);
  if (parsedTopic === null || parsedTopic.kind !== 'telemetry') {
    return { kind: 'not-telemetry', reason: `'${topic}' is not a devices/{id}/telemetry topic` };
  }
  const { deviceId } = parsedTopic;
  const json = parseJson(payload);
  if (!json.ok) return unreadable(deviceId, null, json.reason);
  if (!isDeviceId(deviceId))
    return unreadable(deviceId, json.value, 'the device id in the topic is not a lowercase UUID');
  const envelope = checkTelemetryBatchEnvelope(json.value);
  if (!envelope.ok) return unreadable(deviceId, json.value, `invalid telemetry batch: ${envelope.reason}`);

  const records: TelemetryRow[] = [];
  const invalid: RejectedRecord[] = [];
  // G5: each record is checked alone; a bad one is rejected with its reason, the rest go on
  envelope.value.records.forEach((candidate: unknown, index) => {
    const record = checkTelemetryRecord(candidate);
    const row = record.ok ? telemetryRowFromRecord(deviceId, record.value) : record;
    if (row.ok) records.push(row.value);
    else invalid.push({ id: readableId(candidate) ?? `#${index}`, reason: row.reason });
  });
  return {
    kind: 'batch',
    deviceId,
    batchId: envelope.value.batchId,
    records,
    invalid,
    // informational, stored in sync_status.pending_records_count (BIGINT): capped, so that an
    // absurd count cannot make the database refuse the message's readings
    pendingCount:
      envelope.value.pendingCount === undefined ? null : Math.min(envelope.value.pendingCount, MAX_PENDING_COUNT),
  };
}

/**
 * The largest pendingCount stored: the largest integer a JavaScript number holds exactly (JSON
 * numbers become doubles), far inside sync_status.pending_records_count's BIGINT range.
 */
export const MAX_PENDING_COUNT = Number.MAX_SAFE_INTEGER;

/** The ack for a message that cannot be read as a batch: nothing accepted, every readable id rejected. */
function unreadable(deviceId: string, value: unknown, error: string): ParsedTelemetryMessage {
  const body = isObject(value) ? value : {};
  const batchId = typeof body.batchId === 'string' ? body.batchId : null;
  const records = Array.isArray(body.records) ? (body.records as unknown[]) : [];
  const rejected = records.flatMap((record) => {
    const id = readableId(record);
    return id === null ? [] : [{ id, reason: error }];
  });
  return { kind: 'unreadable', deviceId, ack: { batchId, accepted: 0, rejected, conflicts: 0, error } };
}

function readableId(record: unknown): string | null {
  return isObject(record) && typeof record.id === 'string' ? record.id : null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
