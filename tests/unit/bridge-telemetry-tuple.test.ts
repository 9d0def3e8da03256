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
import {
  storedRowsQuery,
  telemetryColumns,
  telemetryTuple,
  telemetryUpsertStatements,
} from '../../bridge/ingest/telemetry-writer.js';

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

describe('storedRowsQuery (the stored versions of readings already there)', () => {
  const message = (deviceId: string, count: number) => ({
    deviceId,
    records: Array.from({ length: count }, () => row({ id: randomUUID() })),
    invalid: [],
    pendingCount: null,
  });

  it("looks up each device's readings through (device_id, id), one branch per device, in one statement", () => {
    const [first, second] = [randomUUID(), randomUUID()];
    const messages = [message(first, 300), message(second, 3), message(first, 2)];
    const branches = (storedRowsQuery(messages, 'device') ?? '').split(' UNION ALL ');
    expect(branches).toHaveLength(2);
    expect(branches[0]).toContain(`WHERE device_id = '${first}'::uuid AND id = ANY(`);
    expect(branches[1]).toContain(`WHERE device_id = '${second}'::uuid AND id = ANY(`);
    for (const record of [...messages[0]!.records, ...messages[2]!.records]) expect(branches[0]).toContain(record.id);
    for (const record of messages[1]!.records) expect(branches[1]).toContain(record.id);
    // the id-wide path looks everything up by id; nothing to look up, no statement
    expect(storedRowsQuery(messages, 'record-id')).toMatch(/^SELECT .* WHERE id = ANY\(/);
    expect(storedRowsQuery([{ ...message(first, 0), invalid: [{ id: 'x', reason: 'bad' }] }], 'device')).toBeNull();
  });
});
