import { describe, expect, it } from 'vitest';
import { nameBasedId } from '../../common/ids.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import { checkTelemetryRecord } from '../../schemas/validators.js';
import { MAX_METADATA_DEPTH, normalizeReading, type NormalizedReading } from '../../edge/ingest/reading-normalizer.js';

const DEVICE = '5b0f6c1e-8f3a-4c2d-9e1b-2a3c4d5e6f70';
const RECEIVED_AT = Date.UTC(2025, 5, 1, 12, 0, 0, 123);
const TOPIC = 'sensors/boiler-1/temperature';

function normalize(payload: unknown, topic = TOPIC): NormalizedReading {
  const buffer = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  return normalizeReading(DEVICE, topic, buffer, RECEIVED_AT);
}

function accepted(result: NormalizedReading) {
  if (!result.ok) throw new Error(`expected the reading to be accepted, got: ${result.reason}`);
  return result.record;
}

function rejectedReason(result: NormalizedReading): string {
  if (result.ok) throw new Error(`expected the reading to be rejected, got ${JSON.stringify(result.record)}`);
  return result.reason;
}

describe('normalizeReading', () => {
  it('accepts a bare number, stamped with the receive time and a random id', () => {
    const first = accepted(normalize('21.5'));
    const second = accepted(normalize('21.5'));
    expect(first).toMatchObject({
      sensorId: 'boiler-1',
      dataType: 'temperature',
      value: 21.5,
      timestamp: new Date(RECEIVED_AT).toISOString(),
      unit: null,
      metadata: null,
      version: 1,
    });
    expect(first.id).not.toBe(second.id);
    expect(checkTelemetryRecord(first)).toEqual({ ok: true, value: first });
  });

  it('keeps unit and metadata of an object reading', () => {
    const record = accepted(normalize({ value: 3, unit: 'bar', metadata: { probe: 'a' } }));
    expect(record).toMatchObject({ value: 3, unit: 'bar', metadata: { probe: 'a' } });
  });

  it("uses the sensor's id in canonical lower-case form", () => {
    const id = '6F9619FF-8B86-4011-B42D-00C04FC964FF';
    expect(accepted(normalize({ value: 1, id })).id).toBe(id.toLowerCase());
    expect(accepted(normalize({ value: 1, id: `urn:uuid:${id.toLowerCase()}` })).id).toBe(id.toLowerCase());
  });

  it('derives the same id for a re-sent reading with the same ts, and another for another ts', () => {
    const ts = RECEIVED_AT - 5000;
    const first = accepted(normalize({ value: 1, ts }));
    const resent = accepted(normalize({ value: 2, ts }));
    const later = accepted(normalize({ value: 1, ts: ts + 1 }));
    expect(first.id).toBe(nameBasedId(DEVICE, `boiler-1/temperature/${ts}`));
    expect(resent.id).toBe(first.id);
    expect(later.id).not.toBe(first.id);
    expect(first.timestamp).toBe(new Date(ts).toISOString());
  });

  it('treats an ISO ts like the same instant in epoch milliseconds', () => {
    const ts = RECEIVED_AT - 60_000;
    const fromIso = accepted(normalize({ value: 1, ts: new Date(ts).toISOString().replace('Z', '+00:00') }));
    const fromMs = accepted(normalize({ value: 1, ts }));
    expect(fromIso.timestamp).toBe(fromMs.timestamp);
    expect(fromIso.id).toBe(fromMs.id);
  });

  it('rejects payloads that are not JSON, not a reading, or not finite', () => {
    expect(rejectedReason(normalize('{"value": 1'))).toMatch(/not valid JSON/);
    expect(rejectedReason(normalize({ unit: 'C' }))).toMatch(/value/);
    expect(rejectedReason(normalize({ value: 1, colour: 'red' }))).toMatch(/additional properties 'colour'/);
    expect(rejectedReason(normalize('1e999'))).toMatch(/finite/);
    expect(rejectedReason(normalize({ value: '20' }))).toMatch(/value must be number/);
  });

  it('rejects a payload over the size limit before parsing it', () => {
    const big = Buffer.from(JSON.stringify({ value: 1, metadata: { blob: 'x'.repeat(MAX_SENSOR_PAYLOAD_BYTES) } }));
    expect(rejectedReason(normalize(big))).toBe(
      `payload is ${big.length} bytes; a sensor reading may be at most ${MAX_SENSOR_PAYLOAD_BYTES} bytes`,
    );
  });

  it('rejects metadata nested deeper than MAX_METADATA_DEPTH (it could not be serialized for storage)', () => {
    const nested = (levels: number): Record<string, unknown> =>
      levels === 1 ? { leaf: 1 } : { next: nested(levels - 1) };
    expect(accepted(normalize({ value: 1, metadata: nested(MAX_METADATA_DEPTH) })).metadata).toEqual(
      nested(MAX_METADATA_DEPTH),
    );
    expect(rejectedReason(normalize({ value: 1, metadata: nested(MAX_METADATA_DEPTH + 1) }))).toBe(
      `metadata is nested more than ${MAX_METADATA_DEPTH} levels deep`,
    );
    const deepArrays = `{"value": 1, "metadata": {"a": ${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    expect(rejectedReason(normalize(deepArrays))).toMatch(/metadata is nested more than/);
  });

  it('rejects topics whose levels are not valid ids', () => {
    expect(rejectedReason(normalize('1', 'sensors/boiler 1/temperature'))).toMatch(
      /is not sensors\/\{sensorId\}\/\{dataType\}/,
    );
    expect(rejectedReason(normalize('1', 'sensors/a/b/c'))).toMatch(/is not sensors/);
  });

  it('rejects absurd timestamps with a reason that says what is wrong', () => {
    const secondsInsteadOfMs = Math.floor(RECEIVED_AT / 1000);
    expect(rejectedReason(normalize({ value: 1, ts: secondsInsteadOfMs }))).toMatch(/looks like epoch seconds/);
    expect(rejectedReason(normalize({ value: 1, ts: 0 }))).toMatch(/is before 2000-01-01T00:00:00.000Z/);
    expect(rejectedReason(normalize({ value: 1, ts: RECEIVED_AT * 1000 }))).toMatch(/looks like epoch microseconds/);
    expect(rejectedReason(normalize({ value: 1, ts: Date.UTC(2100, 0, 1) }))).toMatch(
      /is not before 2100-01-01T00:00:00.000Z/,
    );
    expect(rejectedReason(normalize({ value: 1, ts: '2025-13-45T99:00:00Z' }))).toMatch(/ts/);
    expect(rejectedReason(normalize({ value: 1, ts: 253402300800000 }))).toMatch(/ts/);
  });

  it('accepts a correct timestamp while the edge clock is wrong (a device booting without a real-time clock)', () => {
    const edgeClockAtBoot = Date.UTC(1970, 0, 1, 0, 5);
    const result = normalizeReading(
      DEVICE,
      'sensors/a/b',
      Buffer.from(JSON.stringify({ value: 1, ts: RECEIVED_AT })),
      edgeClockAtBoot,
    );
    expect(result.ok && result.record.timestamp).toBe(new Date(RECEIVED_AT).toISOString());
  });
});
