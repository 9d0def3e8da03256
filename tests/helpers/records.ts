/**
 * The one factory for telemetry in tests: a valid TelemetryRecord with every field set, changed
 * by overrides; batches of them; and the bridge's row for one.
 */
import { newId } from '../../common/ids.js';
import { telemetryRowFromRecord, type TelemetryRow } from '../../bridge/ingest/telemetry-row.js';
import type { TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';

export const TEST_DEVICE_ID = '5b0f6c1e-8f3a-4c2d-9e1b-2a3c4d5e6f70';

/** the timestamp of every record unless atMs or timestamp says otherwise */
export const BASE_TIME_MS = Date.UTC(2025, 0, 1);

export type RecordOverrides = Partial<TelemetryRecord> & {
  /** the timestamp as epoch milliseconds */
  atMs?: number;
};

export function makeRecord(overrides: RecordOverrides = {}): TelemetryRecord {
  const { atMs, ...rest } = overrides;
  return {
    id: newId(),
    sensorId: 'boiler-1',
    dataType: 'temperature',
    timestamp: new Date(atMs ?? BASE_TIME_MS).toISOString(),
    value: 20,
    unit: 'C',
    metadata: null,
    version: 1,
    ...rest,
  };
}

/**
 * A batch with a fresh id. `records` may hold anything (a test sending invalid records on purpose);
 * `extra` sets pendingCount or overrides batchId.
 */
export function makeBatch(
  records: readonly unknown[] = [makeRecord()],
  extra: Partial<Omit<TelemetryBatch, 'records'>> = {},
): TelemetryBatch {
  return { batchId: newId(), records: records as TelemetryRecord[], ...extra };
}

/** The bridge's normalized row of makeRecord(overrides) for `deviceId`; throws if the bridge would reject it. */
export function makeRow(deviceId: string, overrides: RecordOverrides = {}): TelemetryRow {
  const result = telemetryRowFromRecord(deviceId, makeRecord(overrides));
  if (!result.ok) throw new Error(result.reason);
  return result.value;
}
