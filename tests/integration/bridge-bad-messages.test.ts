/**
 * Bad telemetry from a device must be answered and must never stop the bridge (G5),
 * proven through the real cluster path: the mutual-TLS broker with its ACL and payload limit,
 * the bridge service, and PostgreSQL at SERIALIZABLE.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { MAX_PAYLOAD_BYTES, MAX_SYNC_ACK_REJECTIONS } from '../../schemas/limits.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates } from '../helpers/certs.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { connectTelemetryDevice, type TelemetryDevice } from '../helpers/telemetry-device.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICE = '5c2e7a90-4b1d-4c3e-9f8a-1d2c3b4a5e6f';
const poll = { timeout: 15_000, interval: 25 };

let db: Database;
let broker: TestTlsBroker;
let device: TelemetryDevice;

beforeAll(async () => {
  const [certs, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge'] }),
    startTestPostgres(),
  ]);
  db = await openTestDatabase(postgres, 'bridge-bad-messages-test');
  broker = await startTlsBroker({ tls: certs.broker });
  await startBridgeService({
    databaseUrl: postgres.connectionString,
    brokerUrl: broker.url,
    tls: certs.services.bridge!,
    clientId: 'bridge',
    dbPoolSize: 4,
  });
  device = await connectTelemetryDevice(broker.url, DEVICE, certs.devices[DEVICE]);
});

const stored = async (id: string): Promise<number> =>
  (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE id = $1', [id])).n;

describe('bad telemetry never stops the bridge', () => {
  it('answers a message whose full error ack would exceed the broker payload limit, and goes on', async () => {
    // 20,000 records with empty ids: 200 KB in, but one rejection (id + reason) each would be ~1.8 MB
    // out, which the broker refuses by closing the bridge's connection, again on every reconnect.
    const oversized = makeBatch(Array.from({ length: 20_000 }, () => ({ id: '' })));
    const next = makeBatch();

    await device.send(oversized);
    await device.send(next);

    await expect
      .poll(() => device.ackFor(next.batchId), poll)
      .toEqual({ batchId: next.batchId, accepted: 1, rejected: [], conflicts: 0 });
    expect(await stored(next.records[0]!.id)).toBe(1);
    const answer = device.acks.findIndex((ack) => ack.batchId === oversized.batchId);
    expect(device.acks[answer]).toMatchObject({
      accepted: 0,
      error: expect.stringMatching(/must NOT have more than 1000 items/),
    });
    expect(device.ackBytes[answer]).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    // issue 7, item 10: the first 100 rejections and the total, a few KB instead of ~1 MB
    expect(device.acks[answer]!.rejected).toHaveLength(MAX_SYNC_ACK_REJECTIONS);
    expect(device.acks[answer]!.rejectedCount).toBe(20_000);
    expect(device.ackBytes[answer]).toBeLessThan(16 * 1024);
    // the broker never had to refuse a packet of the bridge (which would have closed its connection)
    expect((await broker.metrics.oversizePackets.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
    expect((await broker.metrics.deniedPublishes.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
  });

  it('answers a message of 90,000 tiny records with a bounded ack: the first 100 rejections and their count', async () => {
    // a misbehaving client's envelope (the edge never sends more than 1000 records): before the bound
    // the ack echoed every id and was 1,048,530 bytes
    // {"id":"7"}, 11 bytes each: 990 KB, below the broker's 1 MiB payload limit
    const tiny = makeBatch(Array.from({ length: 90_000 }, (_, i) => ({ id: String(i % 10) })));
    const next = makeBatch();

    await device.send(tiny);
    await device.send(next);

    await expect.poll(() => device.ackFor(next.batchId), poll).toMatchObject({ accepted: 1 });
    const answer = device.acks.findIndex((ack) => ack.batchId === tiny.batchId);
    expect(device.acks[answer]).toMatchObject({ accepted: 0, rejectedCount: 90_000 });
    expect(device.acks[answer]!.rejected.map((rejection) => rejection.id)).toEqual(
      Array.from({ length: MAX_SYNC_ACK_REJECTIONS }, (_, i) => String(i % 10)),
    );
    expect(device.ackBytes[answer]).toBeLessThan(16 * 1024);
  });

  it('rejects a record whose metadata is nested too deeply for the bridge to walk, alone, and goes on', async () => {
    // 20,000 levels in 100 KB; spelled by hand (JSON.stringify itself would overflow the stack)
    const depth = 20_000;
    const deep = makeRecord({ metadata: { replaced: 'below' } });
    const good = makeRecord();
    const batch = makeBatch([good, deep]);
    const next = makeBatch();
    const nested = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

    await device.send(JSON.stringify(batch).replace('{"replaced":"below"}', nested));
    await device.send(next);

    await expect.poll(() => device.ackFor(next.batchId), poll).toMatchObject({ accepted: 1, rejected: [] });
    expect(device.ackFor(batch.batchId)).toEqual({
      batchId: batch.batchId,
      accepted: 1,
      rejected: [{ id: deep.id, reason: expect.stringMatching(/metadata.*nested/) }],
      conflicts: 0,
    });
    expect([await stored(good.id), await stored(deep.id)]).toEqual([1, 0]);
  });

  it('rejects only the record whose metadata PostgreSQL cannot store (a lone UTF-16 surrogate), not its neighbours', async () => {
    const broken = makeRecord({ metadata: { note: 'half of \ud83d' } });
    const good = makeRecord();
    const batch = makeBatch([good, broken]);

    await device.send(batch);

    await expect
      .poll(() => device.ackFor(batch.batchId), poll)
      .toEqual({
        batchId: batch.batchId,
        accepted: 1,
        rejected: [{ id: broken.id, reason: expect.stringMatching(/metadata/) }],
        conflicts: 0,
      });
    expect([await stored(good.id), await stored(broken.id)]).toEqual([1, 0]);
  });

  it('stores the good readings of a message whose rejected record has a NUL character in its id', async () => {
    const good = makeRecord();
    const batch = makeBatch([good, makeRecord({ id: 'not\u0000a-uuid' })]);
    const next = makeBatch();

    await device.send(batch);
    await device.send(next);

    await expect.poll(() => device.ackFor(next.batchId), poll).toMatchObject({ accepted: 1, rejected: [] });

    await expect
      .poll(() => device.ackFor(batch.batchId), poll)
      .toEqual({
        batchId: batch.batchId,
        accepted: 1,
        rejected: [{ id: 'not\u0000a-uuid', reason: '/id must match format "uuid"' }],
        conflicts: 0,
      });
    expect(await stored(good.id)).toBe(1);
  });

  it('rejects a record stamped 9999-12-31 or 1999-12-31, as the edge does (one rule, schemas/timestamps.ts), and stores its neighbours', async () => {
    const far = makeRecord({ timestamp: '9999-12-31T00:00:00.000Z' });
    const early = makeRecord({ timestamp: '1999-12-31T23:59:59.999Z' });
    const last = makeRecord({ timestamp: '2099-12-31T23:59:59.999Z' });
    const batch = makeBatch([far, early, last]);

    await device.send(batch);

    await expect
      .poll(() => device.ackFor(batch.batchId), poll)
      .toEqual({
        batchId: batch.batchId,
        accepted: 1,
        rejected: [
          { id: far.id, reason: '/timestamp is not before 2100-01-01T00:00:00.000Z' },
          { id: early.id, reason: '/timestamp is before 2000-01-01T00:00:00.000Z' },
        ],
        conflicts: 0,
      });
    expect([await stored(far.id), await stored(early.id), await stored(last.id)]).toEqual([0, 0, 1]);
  });

  it('stores the readings of a batch whose informational pendingCount is beyond the database integer range', async () => {
    const batch = makeBatch([makeRecord()], { pendingCount: 1e20 }); // beyond BIGINT

    await device.send(batch);

    await expect
      .poll(() => device.ackFor(batch.batchId), poll)
      .toEqual({ batchId: batch.batchId, accepted: 1, rejected: [], conflicts: 0 });
    expect(await stored(batch.records[0]!.id)).toBe(1);
    const { pending_records_count: pending } = await db.one(
      'SELECT pending_records_count FROM sync_status WHERE device_id = $1',
      [DEVICE],
    );
    expect(pending).toBe(String(Number.MAX_SAFE_INTEGER));
  });
});
