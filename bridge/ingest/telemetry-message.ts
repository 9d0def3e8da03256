/**
 * Reads one devices/{id}/telemetry message (pure): the device id comes ONLY from the topic (the
 * broker's ACL lets a device publish only under its own certificate's id); the envelope must be
 * valid as a whole; records are checked one by one, so a bad record is rejected alone.
 *
 * G7: parseTelemetryMessageInSlices does the same work in slices of records, giving the event loop
 * back between them. A full edge batch (1000 readings, ~600 KB) takes 15–25 ms to validate, hash
 * and convert; done in one go for every message of a flooding device, it held up the statements
 * of other devices' transactions on the bridge's one event loop (issue 7, item 2).
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
      /** G8: pending readings the device dropped to make room, a total (null when it did not say) */
      droppedCount: number | null;
    }
  /** cannot be stored at all: answer with this ack (it carries `error`) */
  | { kind: 'unreadable'; deviceId: string; ack: SyncAck }
  /** not a device's telemetry topic: nobody to answer */
  | { kind: 'not-telemetry'; reason: string };

/** Reads a message in one go. */
export function parseTelemetryMessage(topic: string, payload: Buffer): ParsedTelemetryMessage {
  const steps = parseSteps(topic, payload, Number.POSITIVE_INFINITY);
  for (let step = steps.next(); ; step = steps.next()) if (step.done === true) return step.value;
}

/** Records checked between two yields to the event loop (about 1 ms of work for full-size readings). */
export const RECORDS_PER_SLICE = 50;

/** Reads a message like parseTelemetryMessage, yielding to the event loop (setImmediate) every `recordsPerSlice` records. */
export async function parseTelemetryMessageInSlices(
  topic: string,
  payload: Buffer,
  recordsPerSlice = RECORDS_PER_SLICE,
): Promise<ParsedTelemetryMessage> {
  const steps = parseSteps(topic, payload, recordsPerSlice);
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done === true) return step.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The parse, as a generator that yields after each `recordsPerSlice` records it checked. */
function* parseSteps(topic: string, payload: Buffer, recordsPerSlice: number): Generator<void, ParsedTelemetryMessage> {
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
  const candidates: readonly unknown[] = envelope.value.records;
  for (let index = 0; index < candidates.length; index += 1) {
    if (index > 0 && index % recordsPerSlice === 0) yield;
    const candidate = candidates[index];
    const record = checkTelemetryRecord(candidate);
    const row = record.ok ? telemetryRowFromRecord(deviceId, record.value) : record;
    if (row.ok) records.push(row.value);
    else invalid.push({ id: readableId(candidate) ?? `#${index}`, reason: row.reason });
  }
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
    droppedCount:
      envelope.value.droppedCount === undefined ? null : Math.min(envelope.value.droppedCount, MAX_PENDING_COUNT),
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
