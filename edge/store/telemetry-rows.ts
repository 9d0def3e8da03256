/**
 * Pure conversion between TelemetryRecord (wire shape: ISO timestamp, metadata object) and
 * telemetry_data rows (epoch-ms INTEGER timestamp, metadata as canonical JSON text).
 */
import type { Row } from '@libsql/client';
import { canonicalJson } from '../../schemas/canonical.js';
import type { TelemetryRecord } from '../../schemas/messages.js';

/** The content columns of telemetry_data, in INSERT order. A change in any of them is a correction. */
export const CONTENT_COLUMNS = [
  'id',
  'device_id',
  'sensor_id',
  'timestamp',
  'data_type',
  'value',
  'unit',
  'metadata',
] as const;

/** The columns read back to rebuild a TelemetryRecord. */
export const RECORD_COLUMNS = 'id, sensor_id, data_type, timestamp, value, unit, metadata, version';

export type ContentValues = [string, string, string, number, string, number, string | null, string | null];

export function timestampToMs(isoTimestamp: string): number {
  const ms = Date.parse(isoTimestamp);
  if (!Number.isFinite(ms)) throw new Error(`reading timestamp '${isoTimestamp}' is not a valid date-time`);
  return ms;
}

export function contentValues(deviceId: string, record: TelemetryRecord): ContentValues {
  return [
    record.id,
    deviceId,
    record.sensorId,
    timestampToMs(record.timestamp),
    record.dataType,
    record.value,
    record.unit ?? null,
    record.metadata === undefined || record.metadata === null ? null : canonicalJson(record.metadata),
  ];
}

export function recordFromRow(row: Row): TelemetryRecord {
  const metadataText = textOrNull(row, 'metadata');
  return {
    id: text(row, 'id'),
    sensorId: text(row, 'sensor_id'),
    dataType: text(row, 'data_type'),
    timestamp: new Date(Number(row['timestamp'])).toISOString(),
    value: Number(row['value']),
    unit: textOrNull(row, 'unit'),
    metadata: metadataText === null ? null : (JSON.parse(metadataText) as Record<string, unknown>),
    version: Number(row['version']),
  };
}

/** A TEXT column's value; anything else (a BLOB, a number) is a corrupt row, said with its column. */
export function text(row: Row, column: string): string {
  const value = row[column];
  if (typeof value !== 'string') throw new TypeError(`column ${column} holds ${typeof value}, expected text`);
  return value;
}

export function textOrNull(row: Row, column: string): string | null {
  return row[column] === null || row[column] === undefined ? null : text(row, column);
}
