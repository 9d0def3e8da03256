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
  const metadataText = row['metadata'];
  const unit = row['unit'];
  return {
    id: String(row['id']),
    sensorId: String(row['sensor_id']),
    dataType: String(row['data_type']),
    timestamp: new Date(Number(row['timestamp'])).toISOString(),
    value: Number(row['value']),
    unit: unit === null || unit === undefined ? null : String(unit),
    metadata:
      metadataText === null || metadataText === undefined
        ? null
        : (JSON.parse(String(metadataText)) as Record<string, unknown>),
    version: Number(row['version']),
  };
}
