/**
 * telemetryTuple (bridge/ingest/telemetry-writer.ts) writes a reading's VALUES tuple by hand
 * instead of through pg-promise's ColumnSet (G7: the generic path held the bridge's event loop for
 * 15–20 ms per 500 readings). It must write exactly what pgp.helpers.values writes, for every kind
 * of value a valid reading can carry.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { pgp } from '../../bridge/db/connection.js';
import { telemetryRowFromRecord, type TelemetryRow } from '../../bridge/ingest/telemetry-row.js';
import { telemetryColumns, telemetryTuple, telemetryUpsertStatements } from '../../bridge/ingest/telemetry-writer.js';

function row(overrides: Record<string, unknown>): TelemetryRow {
  const result = telemetryRowFromRecord(randomUUID(), {
    id: randomUUID(),
    sensorId: 'temp-1',
    dataType: 'temperature',
    timestamp: '2026-11-29T10:00:00.123Z',
    value: 21.5,
    unit: 'C',
    metadata: null,
    version: 1,
    ...overrides,
  } as never);
  if (!result.ok) throw new Error(result.reason);
  return result.value;
}

const CASES: Record<string, Record<string, unknown>> = {
  plain: {},
  'quotes and backslashes': { sensorId: "o'neil\\path", dataType: "it''s", unit: '\\x00' },
  unicode: { sensorId: 'température-°', unit: '°C', metadata: { note: '日本語 🌡️', "k'ey": "v'al" } },
  'null unit and nested metadata': { unit: null, metadata: { a: [1, { b: null, c: 'x"y' }], d: true, e: -0.5 } },
  'extreme numbers': { value: -1.7976931348623157e308, version: 2147483647 },
  'tiny and negative zero': { value: -0 },
  exponent: { value: 1.5e-7, metadata: { n: 1e21 } },
  'empty strings in metadata': { metadata: { '': '' } },
};

describe('telemetryTuple', () => {
  for (const [name, overrides] of Object.entries(CASES)) {
    it(`writes what pg-promise writes for a reading with ${name}`, () => {
      const reading = row(overrides);
      expect(telemetryTuple(reading)).toBe(pgp.helpers.values(reading, telemetryColumns));
    });
  }

  it('makes the same statements as pg-promise would for a batch', () => {
    const rows = Object.values(CASES).map(row);
    const [statement] = [...telemetryUpsertStatements(rows)];
    expect(statement?.startsWith(pgp.helpers.insert(rows, telemetryColumns) + ' ON CONFLICT (device_id, id)')).toBe(
      true,
    );
  });
});
