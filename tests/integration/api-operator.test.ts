/**
 * The operator's read endpoints of the REST API against the real bridge, PostgreSQL at
 * SERIALIZABLE and mutual TLS: device lists with stable keyset pages, a device's telemetry by
 * sensor and time range (one range of idx_device_time, checked with EXPLAIN), conflict_log, and
 * the OpenAPI document generated from the same schemas.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { pgp } from '../../bridge/db/connection.js';
import { telemetryPageSql, telemetryPageValues } from '../../bridge/api/queries.js';
import { errorOf, type ApiClient } from '../helpers/api-client.js';
import { startApiSystem, type ApiSystem } from '../helpers/api-system.js';
import { makeBatch, makeRecord } from '../helpers/records.js';

const DEVICE = '3c4d5e6f-0000-4000-8000-00000000000a';
const OTHER = '3c4d5e6f-0000-4000-8000-00000000000b';
const T0 = Date.UTC(2025, 5, 1);

let system: ApiSystem;
let operator: ApiClient;

beforeAll(async () => {
  system = await startApiSystem({ deviceIds: [DEVICE, OTHER] });
  operator = system.operator();
  // 30 readings of 3 sensors, one a minute, and a few of another device
  const records = Array.from({ length: 30 }, (_, i) =>
    makeRecord({ sensorId: `s${i % 3}`, atMs: T0 + i * 60_000, value: i }),
  );
  expect((await system.device(DEVICE).post('/api/v1/sync/telemetry', makeBatch(records))).status).toBe(200);
  const others = [makeRecord({ sensorId: 's0', atMs: T0 })];
  expect((await system.device(OTHER).post('/api/v1/sync/telemetry', makeBatch(others))).status).toBe(200);
}, 120_000);

type Page<T> = { items: T[]; next: string | null };

async function allPages<T>(path: string, limit: number): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let after: string | null = null;
  let pages = 0;
  do {
    const separator = path.includes('?') ? '&' : '?';
    const cursor: string = after === null ? '' : `&after=${encodeURIComponent(after)}`;
    const response = await operator.get(`${path}${separator}limit=${limit}${cursor}`);
    expect(response.status, response.text).toBe(200);
    const page = response.body as Page<T>;
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    after = page.next;
    pages += 1;
  } while (after !== null);
  return { items, pages };
}

describe('GET /api/v1/devices', () => {
  it('pages by device id: every device once, in order, also when devices are added between pages', async () => {
    const ids = Array.from({ length: 7 }, (_, i) => `3c4d5e6f-0000-4000-8000-0000000001${String(i).padStart(2, '0')}`);
    for (const id of ids) {
      expect((await operator.post('/api/v1/devices/register', { deviceId: id, name: id, type: 'edge' })).status).toBe(
        201,
      );
    }
    const first = (await operator.get('/api/v1/devices?limit=3')).body as Page<{ deviceId: string }>;
    expect(first.items).toHaveLength(3);
    // a device sorting before the cursor appears meanwhile: it must not shift the next pages
    await operator.post('/api/v1/devices/register', {
      deviceId: '00000000-0000-4000-8000-000000000001',
      name: 'early',
      type: 'edge',
    });
    const rest: { deviceId: string }[] = [];
    let after = first.next;
    while (after !== null) {
      const page = (await operator.get(`/api/v1/devices?limit=3&after=${after}`)).body as Page<{ deviceId: string }>;
      rest.push(...page.items);
      after = page.next;
    }
    const seen = [...first.items, ...rest].map((device) => device.deviceId);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
    expect(seen).toEqual(expect.arrayContaining([...ids, DEVICE, OTHER]));
    expect(seen).not.toContain('00000000-0000-4000-8000-000000000001');
  });

  it('shows each device with its sync status and presence', async () => {
    const device = await operator.get(`/api/v1/devices/${DEVICE}`);
    expect(device.body).toMatchObject({
      deviceId: DEVICE,
      presence: { status: 'active', lastSeenAt: expect.any(String) as string },
      sync: { totalSyncedRecords: 30, lastSyncStatus: 'success' },
    });
  });

  it('refuses a cursor it did not make, and a limit out of range, with 400', async () => {
    const bad = await operator.get('/api/v1/devices?after=bm9wZQ');
    expect(bad.status).toBe(400);
    expect(errorOf(bad).code).toBe('invalid-cursor');
    const telemetryCursor = ((await operator.get(`/api/v1/devices/${DEVICE}/telemetry?limit=1`)).body as Page<unknown>)
      .next;
    expect((await operator.get(`/api/v1/devices?after=${telemetryCursor}`)).status).toBe(400);
    expect((await operator.get('/api/v1/devices?limit=0')).status).toBe(400);
    expect((await operator.get('/api/v1/devices?limit=100000')).status).toBe(400);
  });
});

describe('GET /api/v1/devices/:deviceId/telemetry', () => {
  it('returns the readings of one sensor in [from, to), newest first, across pages without gaps or repeats', async () => {
    const from = new Date(T0 + 3 * 60_000).toISOString();
    const to = new Date(T0 + 27 * 60_000).toISOString();
    const { items, pages } = await allPages<{ sensorId: string; timestamp: string; value: number }>(
      `/api/v1/devices/${DEVICE}/telemetry?sensor=s0&from=${from}&to=${to}`,
      3,
    );
    // s0 readings are i = 0, 3, …, 27; in [3, 27): 3, 6, …, 24
    expect(items.map((item) => item.value)).toEqual([24, 21, 18, 15, 12, 9, 6, 3]);
    expect(items.every((item) => item.sensorId === 's0')).toBe(true);
    expect(pages).toBe(3);
  });

  it("returns only the device's own readings, and refuses from after to", async () => {
    const { items } = await allPages<{ value: number }>(`/api/v1/devices/${OTHER}/telemetry`, 50);
    expect(items).toHaveLength(1);
    const response = await operator.get(
      `/api/v1/devices/${DEVICE}/telemetry?from=2025-06-02T00:00:00Z&to=2025-06-01T00:00:00Z`,
    );
    expect(response.status).toBe(400);
    expect(errorOf(response).message).toContain("'from'");
  });

  it('reads one range of idx_device_time (EXPLAIN on PostgreSQL)', async () => {
    await system.db.none(
      `INSERT INTO telemetry_data (device_id, sensor_id, "timestamp", data_type, value, content_hash)
       SELECT $1, 's' || (g % 5), $2::timestamptz + g * interval '1 second', 't', g, '\\x00'
         FROM generate_series(1, 20000) g`,
      [OTHER, new Date(T0).toISOString()],
    );
    await system.db.none('ANALYZE telemetry_data');
    const values = telemetryPageValues({
      deviceId: DEVICE,
      sensor: 's1',
      from: new Date(T0).toISOString(),
      to: new Date(T0 + 3_600_000).toISOString(),
      limit: 100,
    });
    const plan = await system.db.any<{ 'QUERY PLAN': string }>(`EXPLAIN ${pgp.as.format(telemetryPageSql(), values)}`);
    const text = plan.map((row) => row['QUERY PLAN']).join('\n');
    expect(text).toContain('idx_device_time');
    expect(text).not.toMatch(/Seq Scan/);
  });
});

describe('GET /api/v1/conflicts', () => {
  it('lists conflict_log entries newest first, of one device, paged', async () => {
    const records = Array.from({ length: 5 }, (_, i) =>
      makeRecord({ sensorId: 'c', atMs: T0 + i, version: 2, value: 1 }),
    );
    await system.device(DEVICE).post('/api/v1/sync/telemetry', makeBatch(records));
    // older versions of the same readings: stale, each logged once
    const stale = records.map((record) => ({ ...record, version: 1, value: 0 }));
    const ack = await system.device(DEVICE).post('/api/v1/sync/telemetry', makeBatch(stale));
    expect(ack.body).toMatchObject({ accepted: 5, conflicts: 5 });

    const { items, pages } = await allPages<{
      recordId: string;
      conflictType: string;
      deviceId: string;
      detectedAt: string;
    }>(`/api/v1/conflicts?deviceId=${DEVICE}`, 2);
    expect(pages).toBe(3);
    expect(items.map((item) => item.recordId).sort()).toEqual(records.map((record) => record.id).sort());
    expect(items.every((item) => item.conflictType === 'stale-version' && item.deviceId === DEVICE)).toBe(true);
    const times = items.map((item) => item.detectedAt);
    expect(times).toEqual([...times].sort().reverse());
    expect(((await operator.get(`/api/v1/conflicts?deviceId=${OTHER}`)).body as Page<unknown>).items).toEqual([]);
  });
});

describe('GET /api/v1/openapi.json', () => {
  it('is an OpenAPI 3 document listing every route with its schemas and the error body', async () => {
    const response = await system.device(DEVICE).get('/api/v1/openapi.json');
    expect(response.status).toBe(200);
    const doc = response.body as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            responses: Record<string, unknown>;
            requestBody?: unknown;
            parameters?: { name: string; in: string; required?: boolean }[];
          }
        >
      >;
    };
    expect(doc.openapi).toMatch(/^3\./);
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(
      [
        'POST /api/v1/sync/telemetry',
        'GET /api/v1/sync/commands/{deviceId}',
        'POST /api/v1/sync/ack/{commandId}',
        'GET /api/v1/sync/status/{deviceId}',
        'POST /api/v1/devices/register',
        'GET /api/v1/devices',
        'GET /api/v1/devices/{deviceId}',
        'GET /api/v1/devices/{deviceId}/telemetry',
        'GET /api/v1/conflicts',
        'POST /api/v1/commands',
        'GET /api/v1/commands',
        'GET /api/v1/commands/{commandId}',
        'POST /api/v1/commands/{commandId}/cancel',
        'GET /api/v1/devices/{deviceId}/config',
        'GET /api/v1/devices/{deviceId}/config/{key}',
        'PUT /api/v1/devices/{deviceId}/config/{key}',
        'DELETE /api/v1/devices/{deviceId}/config/{key}',
        'GET /api/v1/config/lagging',
      ].sort(),
    );
    for (const [path, methods] of Object.entries(doc.paths)) {
      const pathParameters = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
      for (const [method, operation] of Object.entries(methods)) {
        const where = `${method} ${path}`;
        expect(Object.keys(operation.responses), where).toEqual(expect.arrayContaining(['4XX', '5XX']));
        expect(
          Object.keys(operation.responses).some((code) => /^2\d\d$/.test(code)),
          where,
        ).toBe(true);
        // every {parameter} of the path is declared, in: path, required (what an OpenAPI 3 validator checks)
        const declared = (operation.parameters ?? []).filter((parameter) => parameter.in === 'path');
        expect(declared.map((parameter) => parameter.name).sort(), where).toEqual([...pathParameters].sort());
        expect(
          declared.every((parameter) => parameter.required === true),
          where,
        ).toBe(true);
        if (method === 'post' || method === 'put') {
          if (operation.requestBody !== undefined) {
            expect(Object.keys((operation.requestBody as { content: object }).content), where).toEqual([
              'application/json',
            ]);
          }
        }
      }
    }
    expect(JSON.stringify(doc.paths['/api/v1/sync/telemetry'])).toContain('"maxItems":1000');
  });
});
