/**
 * The device endpoints of the REST API (the seed's Sync API) against the real bridge, PostgreSQL
 * at SERIALIZABLE and real mutual TLS: the HTTP telemetry fallback ingests exactly like MQTT (same
 * rows, same ack body, idempotent on a re-POST), status and registration, and every kind of bad
 * input gets a clear 4xx in the standard error body without losing anything already accepted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_HTTP_BODY_BYTES } from '../../schemas/http-api.js';
import type { SyncAck } from '../../schemas/messages.js';
import { checkSyncAck } from '../../schemas/validators.js';
import { errorOf } from '../helpers/api-client.js';
import { startApiSystem, type ApiSystem } from '../helpers/api-system.js';
import { storedRowCount } from '../helpers/postgres.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { connectTelemetryDevice } from '../helpers/telemetry-device.js';

const HTTP_DEVICE = '2b3c4d5e-0000-4000-8000-00000000000a';
const MQTT_DEVICE = '2b3c4d5e-0000-4000-8000-00000000000b';
const NEW_DEVICE = '2b3c4d5e-0000-4000-8000-00000000000c';

let system: ApiSystem;

beforeAll(async () => {
  system = await startApiSystem({ deviceIds: [HTTP_DEVICE, NEW_DEVICE] });
}, 120_000);

interface StoredRow {
  id: string;
  sensor_id: string;
  data_type: string;
  timestamp: Date;
  value: number;
  unit: string | null;
  metadata: unknown;
  version: string;
  content_hash: Buffer;
}

const rowsOf = (deviceId: string) =>
  system.db.any<StoredRow>(
    `SELECT id, sensor_id, data_type, "timestamp", value, unit, metadata, version, content_hash
       FROM telemetry_data WHERE device_id = $1 ORDER BY "timestamp", sensor_id`,
    [deviceId],
  );

describe('POST /api/v1/sync/telemetry', () => {
  it('ingests a batch exactly like devices/{id}/telemetry: the same rows and the same ack body', async () => {
    const records = (prefix: string) => [
      makeRecord({ sensorId: 'boiler-1', value: 21.5, atMs: Date.UTC(2025, 0, 1, 0, 0, 1), metadata: { a: 1 } }),
      makeRecord({ sensorId: 'boiler-2', value: -3, unit: null, atMs: Date.UTC(2025, 0, 1, 0, 0, 2) }),
      { id: `${prefix}-bad`, sensorId: 'boiler-3', value: 'hot' },
    ];
    const httpBatch = makeBatch(records('http'), { pendingCount: 7 });
    const mqttBatch = makeBatch(records('mqtt'), { pendingCount: 7 });

    const mqttDevice = await connectTelemetryDevice(system.broker.url, MQTT_DEVICE);
    await mqttDevice.send(mqttBatch);
    await expect.poll(() => mqttDevice.ackFor(mqttBatch.batchId), { timeout: 30_000 }).toBeDefined();
    const response = await system.device(HTTP_DEVICE).post('/api/v1/sync/telemetry', httpBatch);
    expect(response.status).toBe(200);

    const httpAck = response.body as SyncAck;
    expect(checkSyncAck(httpAck).ok).toBe(true);
    const mqttAck = mqttDevice.ackFor(mqttBatch.batchId) as SyncAck;
    const withoutIds = (ack: SyncAck, prefix: string) => ({
      ...ack,
      batchId: null,
      rejected: ack.rejected.map((entry) => ({ ...entry, id: entry.id.replace(prefix, 'X') })),
    });
    expect(withoutIds(httpAck, 'http')).toEqual(withoutIds(mqttAck, 'mqtt'));
    expect(httpAck).toMatchObject({ batchId: httpBatch.batchId, accepted: 2, conflicts: 0 });
    expect(httpAck.rejected).toEqual([{ id: 'http-bad', reason: expect.any(String) as string }]);

    const comparable = (rows: StoredRow[]) => rows.map(({ id: _id, ...rest }) => rest);
    expect(comparable(await rowsOf(HTTP_DEVICE))).toEqual(comparable(await rowsOf(MQTT_DEVICE)));
    const status = await system.device(HTTP_DEVICE).get(`/api/v1/sync/status/${HTTP_DEVICE}`);
    expect(status.body).toMatchObject({ pendingRecordsCount: 7, totalSyncedRecords: 2, lastSyncStatus: 'partial' });
  });

  it('is idempotent: POSTing the same batch again adds no rows and answers the same counts', async () => {
    const batch = makeBatch([makeRecord({ sensorId: 'again' }), makeRecord({ sensorId: 'again' })]);
    const device = system.device(HTTP_DEVICE);
    const first = await device.post('/api/v1/sync/telemetry', batch);
    const before = await storedRowCount(system.db, HTTP_DEVICE);
    const second = await device.post('/api/v1/sync/telemetry', batch);
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(await storedRowCount(system.db, HTTP_DEVICE)).toBe(before);
  });

  it('refuses a body that is not JSON with 400 invalid-json and the parser reason', async () => {
    const response = await system.device(HTTP_DEVICE).post('/api/v1/sync/telemetry', '{"batchId": ');
    expect(response.status).toBe(400);
    expect(errorOf(response)).toMatchObject({ code: 'invalid-json' });
    expect(errorOf(response).message).toContain('not JSON');
  });

  it('refuses another content type with 415', async () => {
    const response = await system
      .device(HTTP_DEVICE)
      .post('/api/v1/sync/telemetry', JSON.stringify(makeBatch()), { 'content-type': 'text/plain' });
    expect(response.status).toBe(415);
    expect(errorOf(response).code).toBe('unsupported-media-type');
  });

  it('refuses a body over the limit (the largest MQTT payload) with 413', async () => {
    const huge = Buffer.alloc(MAX_HTTP_BODY_BYTES + 1, 0x20);
    const response = await system.device(HTTP_DEVICE).post('/api/v1/sync/telemetry', huge);
    expect(response.status).toBe(413);
    expect(errorOf(response)).toMatchObject({ code: 'body-too-large' });
    expect(errorOf(response).message).toContain(String(MAX_HTTP_BODY_BYTES));
  });

  it('refuses an envelope that fails telemetry-batch.schema.json with 400 naming the field, and writes nothing', async () => {
    const before = await storedRowCount(system.db, HTTP_DEVICE);
    for (const body of [
      { batchId: 'not-a-uuid', records: [makeRecord()] },
      { batchId: makeBatch().batchId, records: [] },
      { ...makeBatch(), pendingCount: '5' }, // no type coercion: MQTT would refuse it too
      { ...makeBatch(), extra: true },
    ]) {
      const response = await system.device(HTTP_DEVICE).post('/api/v1/sync/telemetry', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(errorOf(response).code).toBe('invalid-request');
      expect(errorOf(response).message).toMatch(/^invalid body: body/);
    }
    expect(await storedRowCount(system.db, HTTP_DEVICE)).toBe(before);
  });
});

describe('GET /api/v1/sync/status/:deviceId', () => {
  it('answers 404 for a device that is not registered and 400 for a malformed id', async () => {
    const operator = system.operator();
    const unknown = await operator.get('/api/v1/sync/status/2b3c4d5e-0000-4000-8000-0000000000ff');
    expect(unknown.status).toBe(404);
    expect(errorOf(unknown).code).toBe('device-not-found');
    const malformed = await operator.get('/api/v1/sync/status/not-a-device');
    expect(malformed.status).toBe(400);
    expect(errorOf(malformed).message).toContain('params/deviceId');
  });
});

describe('POST /api/v1/devices/register', () => {
  it('creates the device row (201), then updates it (200); the status shows it with no sync yet', async () => {
    const device = system.device(NEW_DEVICE);
    const created = await device.post('/api/v1/devices/register', { name: 'pump 7', type: 'pump', location: 'hall 2' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      deviceId: NEW_DEVICE,
      name: 'pump 7',
      type: 'pump',
      location: 'hall 2',
      sync: null,
    });
    const updated = await device.post('/api/v1/devices/register', { name: 'pump 7b', type: 'pump' });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ name: 'pump 7b' });
    const status = await device.get(`/api/v1/sync/status/${NEW_DEVICE}`);
    expect(status.body).toMatchObject({
      deviceId: NEW_DEVICE,
      lastSyncAt: null,
      totalSyncedRecords: 0,
      pendingCommands: 0,
    });
  });

  it('lets an operator register any device, naming it, and refuses a registration without a name', async () => {
    const operator = system.operator();
    const id = '2b3c4d5e-0000-4000-8000-0000000000d0';
    expect((await operator.post('/api/v1/devices/register', { deviceId: id, name: 'x', type: 'edge' })).status).toBe(
      201,
    );
    const unnamed = await operator.post('/api/v1/devices/register', { name: 'x', type: 'edge' });
    expect(unnamed.status).toBe(400);
    expect(errorOf(unnamed).message).toContain('deviceId');
    const missing = await operator.post('/api/v1/devices/register', { deviceId: id, type: 'edge' });
    expect(missing.status).toBe(400);
    expect(errorOf(missing).message).toContain("must have required property 'name'");
  });
});
