import { describe, expect, it } from 'vitest';
import {
  MAX_PENDING_COUNT,
  parseTelemetryMessage,
  parseTelemetryMessageInSlices,
} from '../../bridge/ingest/telemetry-message.js';
import { MAX_METADATA_DEPTH, telemetryRowFromRecord } from '../../bridge/ingest/telemetry-row.js';
import { normalizeReading } from '../../edge/ingest/reading-normalizer.js';
import { canonicalJson } from '../../schemas/canonical.js';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';

const DEVICE = '0b5e7a40-95c4-4a8e-9d4a-1f2a3b4c5d01';
const BATCH = '7f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';

function record(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'a1b2c3d4-0000-4000-8000-000000000001',
    sensorId: 'temp-1',
    dataType: 'temperature',
    timestamp: '2024-05-01T10:00:00Z',
    value: 21.5,
    version: 1,
    ...overrides,
  };
}

const payload = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseTelemetryMessage', () => {
  it('takes the device id from the topic and normalizes the records', () => {
    const parsed = parseTelemetryMessage(
      topics.telemetry(DEVICE),
      payload({ batchId: BATCH, records: [record()], pendingCount: 3 }),
    );
    expect(parsed).toMatchObject({ kind: 'batch', deviceId: DEVICE, batchId: BATCH, invalid: [], pendingCount: 3 });
    if (parsed.kind !== 'batch') throw new Error('unreachable');
    expect(parsed.records[0]).toMatchObject({
      deviceId: DEVICE,
      timestamp: '2024-05-01T10:00:00.000Z',
      unit: null,
      metadata: null,
    });
  });

  it('rejects bad records one by one and keeps the good ones', () => {
    const parsed = parseTelemetryMessage(
      topics.telemetry(DEVICE),
      payload({
        batchId: BATCH,
        records: [
          record(),
          record({ id: 'a1b2c3d4-0000-4000-8000-000000000002', value: 'hot' }),
          record({ id: 'a1b2c3d4-0000-4000-8000-000000000003', metadata: { note: 'nul\u0000byte' } }),
          { value: 1 },
        ],
      }),
    );
    if (parsed.kind !== 'batch') throw new Error(`expected a batch, got ${parsed.kind}`);
    expect(parsed.records).toHaveLength(1);
    expect(parsed.invalid).toEqual([
      { id: 'a1b2c3d4-0000-4000-8000-000000000002', reason: '/value must be number' },
      { id: 'a1b2c3d4-0000-4000-8000-000000000003', reason: '/metadata must not contain U+0000' },
      { id: '#3', reason: expect.stringContaining('must have required property') },
    ]);
  });

  it('answers unparseable JSON with an error ack without a batch id', () => {
    const parsed = parseTelemetryMessage(topics.telemetry(DEVICE), Buffer.from('{not json'));
    expect(parsed).toMatchObject({
      kind: 'unreadable',
      deviceId: DEVICE,
      ack: { batchId: null, accepted: 0, rejected: [], conflicts: 0 },
    });
    if (parsed.kind === 'unreadable') expect(parsed.ack.error).toMatch(/not valid JSON/);
  });

  it('answers a bad envelope with the batch id and every readable record id rejected', () => {
    const parsed = parseTelemetryMessage(
      topics.telemetry(DEVICE),
      payload({ batchId: BATCH, records: [record(), { id: 'x' }, 5], deviceId: DEVICE }),
    );
    expect(parsed.kind).toBe('unreadable');
    if (parsed.kind !== 'unreadable') return;
    expect(parsed.ack.batchId).toBe(BATCH);
    expect(parsed.ack.rejected.map((r) => r.id)).toEqual(['a1b2c3d4-0000-4000-8000-000000000001', 'x']);
    expect(parsed.ack.error).toMatch(/invalid telemetry batch: .*additional properties 'deviceId'/);
  });

  it('rejects a batch whose topic id is not a device id', () => {
    const parsed = parseTelemetryMessage(
      'devices/not-a-uuid/telemetry',
      payload({ batchId: BATCH, records: [record()] }),
    );
    expect(parsed).toMatchObject({ kind: 'unreadable', deviceId: 'not-a-uuid', ack: { batchId: BATCH, accepted: 0 } });
  });

  it("reads a device's droppedCount (null when it does not say) and refuses a negative one with the envelope", () => {
    const parse = (extra: object) =>
      parseTelemetryMessage(topics.telemetry(DEVICE), payload({ batchId: BATCH, records: [record()], ...extra }));
    expect(parse({ droppedCount: 4200 })).toMatchObject({ kind: 'batch', droppedCount: 4200 });
    expect(parse({})).toMatchObject({ kind: 'batch', droppedCount: null });
    expect(parse({ droppedCount: 1e20 })).toMatchObject({ kind: 'batch', droppedCount: MAX_PENDING_COUNT });
    expect(parse({ droppedCount: -1 })).toMatchObject({ kind: 'unreadable' });
  });

  it('keeps a pendingCount beyond 32 bits (sync_status.pending_records_count is BIGINT) and caps one beyond exact numbers', () => {
    const parse = (pendingCount: number) =>
      parseTelemetryMessage(topics.telemetry(DEVICE), payload({ batchId: BATCH, records: [record()], pendingCount }));
    expect(parse(3e9)).toMatchObject({ kind: 'batch', pendingCount: 3e9 });
    expect(parse(1e20)).toMatchObject({ kind: 'batch', pendingCount: MAX_PENDING_COUNT });
    expect(MAX_PENDING_COUNT).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('rejects a record with metadata nested too deeply to walk, alone, instead of overflowing the stack', () => {
    const depth = 20_000;
    const deep = JSON.stringify({
      batchId: BATCH,
      records: [record(), record({ id: 'a1b2c3d4-0000-4000-8000-000000000002', metadata: null })],
    }).replace('"metadata":null', `"metadata":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
    const parsed = parseTelemetryMessage(topics.telemetry(DEVICE), Buffer.from(deep));
    if (parsed.kind !== 'batch') throw new Error(`expected a batch, got ${parsed.kind}`);
    expect(parsed.records).toHaveLength(1);
    expect(parsed.invalid).toEqual([
      {
        id: 'a1b2c3d4-0000-4000-8000-000000000002',
        reason: `/metadata must not be nested deeper than ${MAX_METADATA_DEPTH} levels`,
      },
    ]);
  });

  it('says so for a topic that is not telemetry', () => {
    expect(parseTelemetryMessage(topics.status(DEVICE), payload({})).kind).toBe('not-telemetry');
  });
});

describe('telemetryRowFromRecord', () => {
  const base: TelemetryRecord = {
    id: 'A1B2C3D4-0000-4000-8000-000000000001',
    sensorId: 's',
    dataType: 't',
    timestamp: '2024-05-01T12:00:00+02:00',
    value: 1,
    version: 1,
  };

  it('normalizes id case and time zone so equal readings hash equal', () => {
    const a = telemetryRowFromRecord(DEVICE, base);
    const b = telemetryRowFromRecord(DEVICE, {
      ...base,
      id: base.id.toLowerCase(),
      timestamp: '2024-05-01T10:00:00.000Z',
      unit: null,
    });
    if (!a.ok || !b.ok) throw new Error('expected valid rows');
    expect(a.value.id).toBe('a1b2c3d4-0000-4000-8000-000000000001');
    expect(a.value.timestamp).toBe('2024-05-01T10:00:00.000Z');
    expect(a.value.contentHash).toBe(b.value.contentHash);
  });

  it('hashes metadata independently of key order but not of values', () => {
    const a = telemetryRowFromRecord(DEVICE, { ...base, metadata: { x: 1, y: { b: 2, a: 1 } } });
    const b = telemetryRowFromRecord(DEVICE, { ...base, metadata: { y: { a: 1, b: 2 }, x: 1 } });
    const c = telemetryRowFromRecord(DEVICE, { ...base, metadata: { y: { a: 1, b: 3 }, x: 1 } });
    if (!a.ok || !b.ok || !c.ok) throw new Error('expected valid rows');
    expect(a.value.contentHash).toBe(b.value.contentHash);
    expect(a.value.contentHash).not.toBe(c.value.contentHash);
  });

  it('takes timestamps by the same rule as the edge: [2000-01-01, 2100-01-01) UTC (schemas/timestamps.ts)', () => {
    const at = (timestamp: string) => telemetryRowFromRecord(DEVICE, { ...base, timestamp });
    expect(at('2000-01-01T00:00:00.000Z')).toMatchObject({ ok: true });
    expect(at('2099-12-31T23:59:59.999Z')).toMatchObject({ ok: true });
    expect(at('1999-12-31T23:59:59.999Z')).toEqual({
      ok: false,
      reason: '/timestamp is before 2000-01-01T00:00:00.000Z',
    });
    expect(at('2100-01-01T00:00:00.000Z')).toEqual({
      ok: false,
      reason: '/timestamp is not before 2100-01-01T00:00:00.000Z',
    });
    expect(at('9999-12-31T00:00:00.000Z')).toMatchObject({ ok: false });
    for (const ms of [
      Date.UTC(1999, 11, 31, 23, 59, 59, 999),
      Date.UTC(2000, 0, 1),
      Date.UTC(2099, 11, 31),
      Date.UTC(2100, 0, 1),
    ]) {
      const edge = normalizeReading(DEVICE, 'sensors/a/b', Buffer.from(JSON.stringify({ value: 1, ts: ms })), ms);
      expect({ ms, edge: edge.ok }).toEqual({ ms, edge: at(new Date(ms).toISOString()).ok });
    }
  });

  it('rejects what PostgreSQL or CockroachDB could not store', () => {
    expect(telemetryRowFromRecord(DEVICE, { ...base, timestamp: '1969-12-31T23:59:59Z' })).toMatchObject({ ok: false });
    expect(telemetryRowFromRecord(DEVICE, { ...base, timestamp: '2016-12-31T23:59:60Z' })).toMatchObject({ ok: false });
    expect(telemetryRowFromRecord(DEVICE, { ...base, value: Number.POSITIVE_INFINITY })).toMatchObject({ ok: false });
    expect(telemetryRowFromRecord(DEVICE, { ...base, unit: 'a\u0000' })).toMatchObject({ ok: false });
    expect(telemetryRowFromRecord(DEVICE, { ...base, metadata: { 'k\u0000': 1 } })).toMatchObject({ ok: false });
    // jsonb refuses the \u escape of a lone surrogate; text would store U+FFFD instead of it
    expect(telemetryRowFromRecord(DEVICE, { ...base, metadata: { note: ['x', 'half \ud83d'] } })).toMatchObject({
      ok: false,
    });
    expect(telemetryRowFromRecord(DEVICE, { ...base, metadata: { '\ude00': 1 } })).toMatchObject({ ok: false });
    expect(telemetryRowFromRecord(DEVICE, { ...base, unit: '\ude00C' })).toMatchObject({ ok: false });
    expect(
      telemetryRowFromRecord(DEVICE, { ...base, unit: '\ud83d\ude00', metadata: { emoji: '\ud83d\ude00' } }),
    ).toMatchObject({ ok: true });
  });

  it('accepts metadata nested MAX_METADATA_DEPTH levels deep (objects and arrays alike), and no deeper', () => {
    const nested = (levels: number): Record<string, unknown> => {
      let value: unknown = 'leaf';
      for (let level = 1; level < levels; level += 1) value = level % 2 === 0 ? { x: value } : [value];
      return { x: value };
    };
    expect(telemetryRowFromRecord(DEVICE, { ...base, metadata: nested(MAX_METADATA_DEPTH) })).toMatchObject({
      ok: true,
    });
    expect(telemetryRowFromRecord(DEVICE, { ...base, metadata: nested(MAX_METADATA_DEPTH + 1) })).toEqual({
      ok: false,
      reason: `/metadata must not be nested deeper than ${MAX_METADATA_DEPTH} levels`,
    });
  });

  it('canonicalJson sorts keys at every level and keeps arrays in order', () => {
    expect(canonicalJson({ b: [2, { d: 1, c: null }], a: 'x' })).toBe('{"a":"x","b":[2,{"c":null,"d":1}]}');
  });
});

describe('parseTelemetryMessageInSlices', () => {
  const ids = (n: number) => `a1b2c3d4-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const mixed = payload({
    batchId: BATCH,
    pendingCount: 12,
    records: Array.from({ length: 230 }, (_, n) =>
      n % 7 === 0 ? record({ id: ids(n), value: 'not a number' }) : record({ id: ids(n), value: n }),
    ),
  });

  it('reads a message exactly as parseTelemetryMessage does, valid, invalid and unreadable alike', async () => {
    for (const [topic, body] of [
      [topics.telemetry(DEVICE), mixed],
      [topics.telemetry(DEVICE), Buffer.from('{not json')],
      [topics.telemetry(DEVICE), payload({ records: [] })],
      ['devices/x/status', mixed],
    ] as const) {
      expect(await parseTelemetryMessageInSlices(topic, body, 50)).toEqual(parseTelemetryMessage(topic, body));
    }
  });

  it('gives the event loop back between slices of records', async () => {
    // another piece of work that needs a turn of the event loop again and again
    let turns = 0;
    let running = true;
    const tick = (): void => {
      if (!running) return;
      turns += 1;
      setImmediate(tick);
    };
    setImmediate(tick);
    await parseTelemetryMessageInSlices(topics.telemetry(DEVICE), mixed, 10);
    running = false;
    // 230 records in slices of 10: 22 yields, each letting the other work take a turn
    expect(turns).toBeGreaterThanOrEqual(20);
  });
});
