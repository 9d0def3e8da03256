import { describe, expect, it } from 'vitest';
import {
  checkSensorReading,
  checkSyncAck,
  checkTelemetryBatchEnvelope,
  checkTelemetryRecord,
  parseJson,
} from '../../schemas/validators.js';

const record = {
  id: '0f8fad5b-d9cb-469f-a165-70867728950e',
  sensorId: 's1',
  dataType: 'temperature',
  timestamp: '2026-11-23T07:00:00.000Z',
  value: 21.5,
  unit: 'C',
  metadata: null,
  version: 1,
};

describe('sensor readings', () => {
  it('accepts a bare number and the object form', () => {
    expect(checkSensorReading(3.5)).toEqual({ ok: true, value: { value: 3.5 } });
    expect(checkSensorReading({ value: 1, unit: 'C', ts: 1700000000000, metadata: { a: 1 } }).ok).toBe(true);
    expect(checkSensorReading({ value: 1, ts: '2026-11-23T07:00:00Z' }).ok).toBe(true);
  });

  it('explains what is wrong', () => {
    expect(checkSensorReading({ value: 'hot' })).toEqual({ ok: false, reason: '/value must be number' });
    expect(checkSensorReading({})).toEqual({ ok: false, reason: "(root) must have required property 'value'" });
    expect(checkSensorReading({ value: 1, colour: 'red' })).toEqual({
      ok: false,
      reason: "(root) must NOT have additional properties 'colour'",
    });
    expect(checkSensorReading({ value: 1, id: 'not-a-uuid' }).ok).toBe(false);
    expect(checkSensorReading({ value: 1, ts: 'yesterday' }).ok).toBe(false);
    expect(checkSensorReading(Number.POSITIVE_INFINITY).ok).toBe(false);
    expect(checkSensorReading('12').ok).toBe(false);
  });

  it('reports unparsable JSON with the parser message', () => {
    const result = parseJson(Buffer.from('{"value":'));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/^payload is not valid JSON: /);
  });
});

describe('telemetry batches', () => {
  it('validates records one by one', () => {
    expect(checkTelemetryRecord(record).ok).toBe(true);
    expect(checkTelemetryRecord({ ...record, version: 0 }).ok).toBe(false);
    expect(checkTelemetryRecord({ ...record, sensorId: 'a/b' }).ok).toBe(false);
    expect(checkTelemetryRecord({ ...record, timestamp: 'now' }).ok).toBe(false);
  });

  it('limits a batch to 1000 records and requires a uuid batchId', () => {
    const batchId = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
    expect(checkTelemetryBatchEnvelope({ batchId, records: [record] }).ok).toBe(true);
    expect(checkTelemetryBatchEnvelope({ batchId, records: Array(1001).fill(record) }).ok).toBe(false);
    expect(checkTelemetryBatchEnvelope({ batchId: 'b1', records: [record] }).ok).toBe(false);
    expect(checkTelemetryBatchEnvelope({ batchId, records: [] }).ok).toBe(false);
  });

  it('validates sync acks, including the unreadable-batch form', () => {
    expect(checkSyncAck({ batchId: 'x', accepted: 2, rejected: [{ id: 'a', reason: 'r' }], conflicts: 0 }).ok).toBe(
      true,
    );
    expect(checkSyncAck({ batchId: null, accepted: 0, rejected: [], conflicts: 0, error: 'not JSON' }).ok).toBe(true);
    expect(checkSyncAck({ batchId: 'x', accepted: -1, rejected: [], conflicts: 0 }).ok).toBe(false);
  });
});
