/**
 * Bad telemetry from a device must be answered and must never stop the bridge (G5),
 * proven through the real cluster path: the mutual-TLS broker with its ACL and payload limit,
 * the bridge service, and PostgreSQL at SERIALIZABLE.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { closeDatabase, openDatabase, type Database } from '../../bridge/db/connection.js';
import { startBridge, type RunningBridge } from '../../bridge/service.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { SyncAck, TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { BRIDGE_DEFAULTS } from '../../bridge/config.js';

const DEVICE = '5c2e7a90-4b1d-4c3e-9f8a-1d2c3b4a5e6f';
const poll = { timeout: 15_000, interval: 25 };

let certs: TestCertificates;
let postgres: TestPostgres;
let db: Database;
let broker: RunningBroker;
let bridge: RunningBridge;
let device: MqttClient;
const acks: Array<{ bytes: number; ack: SyncAck }> = [];

beforeAll(async () => {
  [certs, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge'] }),
    startTestPostgres(),
  ]);
  db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'bridge-bad-messages-test' });
  broker = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) });
  const service = certs.services.bridge!;
  bridge = await startBridge(
    {
      databaseUrl: postgres.connectionString,
      brokerUrl: `mqtts://127.0.0.1:${broker.port}`,
      tls: { ca: service.ca, cert: service.cert, key: service.key },
      clientId: 'bridge',
      ...BRIDGE_DEFAULTS,
      dbPoolSize: 4,
      http: null,
    },
    { logger: pino({ level: 'silent' }) },
  );
  device = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
    ...certs.devices[DEVICE]!,
    clientId: DEVICE,
    clean: true,
    reconnectPeriod: 0,
  });
  device.on('message', (_topic, payload) =>
    acks.push({ bytes: payload.length, ack: JSON.parse(payload.toString()) as SyncAck }),
  );
  await device.subscribeAsync(topics.syncAck(DEVICE), { qos: 1 });
});

afterAll(async () => {
  await device?.endAsync(true);
  await bridge?.close();
  await broker?.close();
  await closeDatabase(db);
  await postgres?.close();
  await certs?.cleanup();
});

function record(overrides: Partial<TelemetryRecord> = {}): TelemetryRecord {
  return {
    id: randomUUID(),
    sensorId: 's1',
    dataType: 'temperature',
    timestamp: new Date().toISOString(),
    value: 20,
    version: 1,
    ...overrides,
  };
}

async function send(payload: unknown): Promise<void> {
  await device.publishAsync(topics.telemetry(DEVICE), typeof payload === 'string' ? payload : JSON.stringify(payload), {
    qos: 1,
  });
}

const ackFor = (batchId: string) => acks.find((entry) => entry.ack.batchId === batchId);

const stored = async (id: string): Promise<number> =>
  (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE id = $1', [id])).n;

describe('bad telemetry never stops the bridge', () => {
  it('answers a message whose full error ack would exceed the broker payload limit, and goes on', async () => {
    // 20,000 records with empty ids: 200 KB in, but one rejection (id + reason) each would be ~1.8 MB
    // out, which the broker refuses by closing the bridge's connection, again on every reconnect.
    const oversized = { batchId: randomUUID(), records: Array.from({ length: 20_000 }, () => ({ id: '' })) };
    const next: TelemetryBatch = { batchId: randomUUID(), records: [record()] };

    await send(oversized);
    await send(next);

    await expect
      .poll(() => ackFor(next.batchId)?.ack, poll)
      .toEqual({ batchId: next.batchId, accepted: 1, rejected: [], conflicts: 0 });
    expect(await stored(next.records[0]!.id)).toBe(1);
    const answer = ackFor(oversized.batchId);
    expect(answer?.ack).toMatchObject({
      accepted: 0,
      error: expect.stringMatching(/must NOT have more than 1000 items/),
    });
    expect(answer?.bytes).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    // the broker never had to refuse a packet of the bridge (which would have closed its connection)
    expect((await broker.metrics.oversizePackets.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
    expect((await broker.metrics.deniedPublishes.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
  });

  it('rejects a record whose metadata is nested too deeply for the bridge to walk, alone, and goes on', async () => {
    // 20,000 levels in 100 KB; spelled by hand (JSON.stringify itself would overflow the stack)
    const depth = 20_000;
    const deep = record({ metadata: null });
    const good = record();
    const batch: TelemetryBatch = { batchId: randomUUID(), records: [good, deep] };
    const next: TelemetryBatch = { batchId: randomUUID(), records: [record()] };
    const nested = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

    await send(JSON.stringify(batch).replace('"metadata":null', `"metadata":${nested}`));
    await send(next);

    await expect.poll(() => ackFor(next.batchId)?.ack, poll).toMatchObject({ accepted: 1, rejected: [] });
    expect(ackFor(batch.batchId)?.ack).toEqual({
      batchId: batch.batchId,
      accepted: 1,
      rejected: [{ id: deep.id, reason: expect.stringMatching(/metadata.*nested/) }],
      conflicts: 0,
    });
    expect([await stored(good.id), await stored(deep.id)]).toEqual([1, 0]);
  });

  it('rejects only the record whose metadata PostgreSQL cannot store (a lone UTF-16 surrogate), not its neighbours', async () => {
    const broken = record({ metadata: { note: 'half of \ud83d' } });
    const good = record();
    const batch: TelemetryBatch = { batchId: randomUUID(), records: [good, broken] };

    await send(batch);

    await expect
      .poll(() => ackFor(batch.batchId)?.ack, poll)
      .toEqual({
        batchId: batch.batchId,
        accepted: 1,
        rejected: [{ id: broken.id, reason: expect.stringMatching(/metadata/) }],
        conflicts: 0,
      });
    expect([await stored(good.id), await stored(broken.id)]).toEqual([1, 0]);
  });

  it('stores the good readings of a message whose rejected record has a NUL character in its id', async () => {
    const good = record();
    const batch = { batchId: randomUUID(), records: [good, { ...record(), id: 'not\u0000a-uuid' }] };
    const next: TelemetryBatch = { batchId: randomUUID(), records: [record()] };

    await send(batch);
    await send(next);

    await expect.poll(() => ackFor(next.batchId)?.ack, poll).toMatchObject({ accepted: 1, rejected: [] });

    await expect
      .poll(() => ackFor(batch.batchId)?.ack, poll)
      .toEqual({
        batchId: batch.batchId,
        accepted: 1,
        rejected: [{ id: 'not\u0000a-uuid', reason: '/id must match format "uuid"' }],
        conflicts: 0,
      });
    expect(await stored(good.id)).toBe(1);
  });

  it('stores the readings of a batch whose informational pendingCount is beyond the database integer range', async () => {
    const batch = { batchId: randomUUID(), records: [record()], pendingCount: 1e20 }; // beyond BIGINT

    await send(batch);

    await expect
      .poll(() => ackFor(batch.batchId)?.ack, poll)
      .toEqual({ batchId: batch.batchId, accepted: 1, rejected: [], conflicts: 0 });
    expect(await stored(batch.records[0]!.id)).toBe(1);
    const { pending_records_count: pending } = await db.one(
      'SELECT pending_records_count FROM sync_status WHERE device_id = $1',
      [DEVICE],
    );
    expect(pending).toBe(String(Number.MAX_SAFE_INTEGER));
  });
});
