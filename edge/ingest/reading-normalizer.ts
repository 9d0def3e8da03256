/**
 * Turns one sensor publish into a TelemetryRecord, or a one-line reason why it cannot be stored
 * (pure: no clock, no I/O; the receive time is an argument).
 *
 * Identity of a reading (what makes a re-sent reading land on the same row):
 *   - the sensor's `id` when it sends one (a UUID, stored in canonical lower-case form);
 *   - otherwise, when it sends `ts`, a name-based UUID of (device, sensor, data type, ts);
 *   - otherwise a random UUID (the reading cannot be recognised if re-sent).
 */
import { nameBasedId, newId } from '../../common/ids.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { parseSensorTopic } from '../../schemas/topics.js';
import { canonicalUuid, nestedDeeperThan } from '../../schemas/canonical.js';
import { checkSensorReading, parseJson } from '../../schemas/validators.js';
import { checkReadingTimestamp, isReadingTimestampInRange } from '../../schemas/timestamps.js';

export type NormalizedReading = { ok: true; record: TelemetryRecord } | { ok: false; reason: string };

/**
 * Deepest nesting of objects and arrays accepted in metadata. Storing a reading serializes its
 * metadata recursively (canonicalJson, JSON.stringify), so a small payload nested thousands of
 * levels deep would overflow the stack at commit time and fail every reading of its group commit.
 */
export const MAX_METADATA_DEPTH = 32;

type TimestampResult = { ok: true; ms: number } | { ok: false; reason: string };

function resolveTimestamp(ts: number | string | undefined, receivedAtMs: number): TimestampResult {
  if (ts === undefined) return { ok: true, ms: receivedAtMs };
  const ms = typeof ts === 'number' ? ts : Date.parse(ts);
  if (!Number.isFinite(ms)) {
    return { ok: false, reason: `ts '${String(ts)}' is not a representable date-time` };
  }
  // G5: one timestamp rule for edge and bridge (schemas/timestamps.ts)
  const range = checkReadingTimestamp(ms);
  if (!range.ok) {
    const hint =
      typeof ts !== 'number'
        ? ''
        : range.tooEarly && isReadingTimestampInRange(ts * 1000)
          ? ' (it looks like epoch seconds; send epoch milliseconds)'
          : !range.tooEarly && isReadingTimestampInRange(ts / 1000)
            ? ' (it looks like epoch microseconds; send epoch milliseconds)'
            : '';
    return { ok: false, reason: `ts ${JSON.stringify(ts)} ${range.reason}${hint}` };
  }
  return { ok: true, ms: Math.trunc(ms) };
}

export function normalizeReading(
  deviceId: string,
  topic: string,
  payload: Buffer,
  receivedAtMs: number,
): NormalizedReading {
  const parsedTopic = parseSensorTopic(topic);
  if (parsedTopic === null) {
    return {
      ok: false,
      reason: `topic '${topic}' is not sensors/{sensorId}/{dataType} with ids of 1-64 characters from A-Z a-z 0-9 _ . : -`,
    };
  }
  if (payload.length > MAX_SENSOR_PAYLOAD_BYTES) {
    return {
      ok: false,
      reason: `payload is ${payload.length} bytes; a sensor reading may be at most ${MAX_SENSOR_PAYLOAD_BYTES} bytes`,
    };
  }
  const json = parseJson(payload);
  if (!json.ok) return json;
  const reading = checkSensorReading(json.value);
  if (!reading.ok) return { ok: false, reason: `invalid reading: ${reading.reason}` };

  const { sensorId, dataType } = parsedTopic;
  const input = reading.value;
  if (input.metadata !== undefined && nestedDeeperThan(input.metadata, MAX_METADATA_DEPTH)) {
    return { ok: false, reason: `metadata is nested more than ${MAX_METADATA_DEPTH} levels deep` };
  }
  const timestamp = resolveTimestamp(input.ts, receivedAtMs);
  if (!timestamp.ok) return timestamp;

  let id: string;
  if (input.id !== undefined) id = canonicalUuid(input.id);
  else if (input.ts !== undefined) id = nameBasedId(deviceId, `${sensorId}/${dataType}/${timestamp.ms}`);
  else id = newId();

  return {
    ok: true,
    record: {
      id,
      sensorId,
      dataType,
      timestamp: new Date(timestamp.ms).toISOString(),
      value: input.value,
      unit: input.unit ?? null,
      metadata: input.metadata ?? null,
      version: 1,
    },
  };
}
