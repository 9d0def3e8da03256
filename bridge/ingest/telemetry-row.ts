/**
 * A validated telemetry record in the form the bridge stores it, with its content hash.
 *
 * Normalization makes equal readings compare equal however the edge spelled them: the id is a
 * lowercase UUID, the timestamp is UTC ISO 8601 with milliseconds, absent unit/metadata are
 * null. The content hash (SHA-256 of a canonical JSON of sensorId, dataType, timestamp, value,
 * unit, metadata) is stored with the row; equal hashes mean the same reading, and the larger
 * hash breaks ties between two different readings with the same id and version.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, canonicalUuid, nestedDeeperThan } from '../../schemas/canonical.js';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { checkReadingTimestamp } from '../../schemas/timestamps.js';
import type { Validation } from '../../schemas/validators.js';

/** What conflict_log stores as local/remote/resolved value. */
export interface TelemetryRowJson {
  id: string;
  sensorId: string;
  dataType: string;
  timestamp: string;
  value: number;
  unit: string | null;
  metadata: Record<string, unknown> | null;
  version: number;
}

export interface TelemetryRow extends TelemetryRowJson {
  deviceId: string;
  /** hex SHA-256 of canonicalContent(row) */
  contentHash: string;
}

/** Objects and arrays inside metadata, counted from the metadata object itself (1). */
export const MAX_METADATA_DEPTH = 64;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Turns a schema-valid record into a row, or says why it cannot be stored. Catches what the JSON
 * schema cannot: unparseable instants or instants outside schemas/timestamps.ts's range, non-finite numbers, NUL characters
 * (PostgreSQL text and jsonb reject U+0000), lone UTF-16 surrogates (jsonb rejects their \u
 * escapes; text would silently store U+FFFD instead), and metadata nested deeper than
 * MAX_METADATA_DEPTH (the bridge's hashing, checks and JSON serialization recurse per level: a
 * deeper value overflows the stack).
 */
export function telemetryRowFromRecord(deviceId: string, record: TelemetryRecord): Validation<TelemetryRow> {
  const instant = new Date(record.timestamp).getTime();
  if (!Number.isFinite(instant)) return { ok: false, reason: '/timestamp is not a valid instant' };
  // G5: the edge's rule, from one place (schemas/timestamps.ts); out of range, the record is rejected alone
  const range = checkReadingTimestamp(instant);
  if (!range.ok) return { ok: false, reason: `/timestamp ${range.reason}` };
  if (!Number.isFinite(record.value)) return { ok: false, reason: '/value must be a finite number' };
  const unit = record.unit ?? null;
  const metadata = record.metadata ?? null;
  if (unit !== null && unit.includes('\u0000')) return { ok: false, reason: '/unit must not contain U+0000' };
  if (unit !== null && LONE_SURROGATE.test(unit))
    return { ok: false, reason: '/unit must be valid Unicode (no lone UTF-16 surrogate)' };
  if (metadata !== null && nestedDeeperThan(metadata, MAX_METADATA_DEPTH)) {
    return { ok: false, reason: `/metadata must not be nested deeper than ${MAX_METADATA_DEPTH} levels` };
  }
  // eslint-disable-next-line no-control-regex -- NUL is exactly what PostgreSQL refuses in text (22P05/08P01)
  if (metadata !== null && containsText(metadata, /\u0000/))
    return { ok: false, reason: '/metadata must not contain U+0000' };
  if (metadata !== null && containsText(metadata, LONE_SURROGATE)) {
    return { ok: false, reason: '/metadata must be valid Unicode (no lone UTF-16 surrogate)' };
  }
  const content = {
    id: canonicalUuid(record.id),
    sensorId: record.sensorId,
    dataType: record.dataType,
    timestamp: new Date(instant).toISOString(),
    value: record.value,
    unit,
    metadata,
    version: record.version,
  };
  return { ok: true, value: { ...content, deviceId, contentHash: contentHash(content) } };
}

/** The JSON written to conflict_log for a row. */
export function telemetryRowJson(row: TelemetryRow): TelemetryRowJson {
  const { id, sensorId, dataType, timestamp, value, unit, metadata, version } = row;
  return { id, sensorId, dataType, timestamp, value, unit, metadata, version };
}

export function canonicalContent(row: Omit<TelemetryRowJson, 'id' | 'version'>): string {
  const { sensorId, dataType, timestamp, value, unit, metadata } = row;
  return canonicalJson({ sensorId, dataType, timestamp, value, unit, metadata });
}

export function contentHash(row: Omit<TelemetryRowJson, 'id' | 'version'>): string {
  return createHash('sha256').update(canonicalContent(row)).digest('hex');
}

/** Whether a string or object key anywhere in `value` matches `pattern` (call after the depth check). */
function containsText(value: unknown, pattern: RegExp): boolean {
  if (typeof value === 'string') return pattern.test(value);
  if (Array.isArray(value)) return value.some((item) => containsText(item, pattern));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([key, item]) => pattern.test(key) || containsText(item, pattern));
  }
  return false;
}
