/** TelemetryRecord factory for edge tests. */
import { newId } from '../../common/ids.js';
import type { TelemetryRecord } from '../../schemas/messages.js';

export const TEST_DEVICE_ID = '5b0f6c1e-8f3a-4c2d-9e1b-2a3c4d5e6f70';

export const BASE_TIME_MS = Date.UTC(2025, 0, 1);

export function makeRecord(overrides: Partial<TelemetryRecord> & { atMs?: number } = {}): TelemetryRecord {
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
