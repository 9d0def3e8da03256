/**
 * Poison-message isolation on a real PostgreSQL at SERIALIZABLE (G5): a message the
 * database refuses, with an error outside SQLSTATE classes 22/23, is rejected alone while the
 * messages batched with it commit; a failure of every message (the database's fault) rejects
 * nothing. The pipeline runs with the real writer; the MQTT deliveries are recorded in memory.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { IngestPipeline, type InboundMessage } from '../../bridge/ingest/ingest-pipeline.js';
import { writeTelemetryBatch } from '../../bridge/ingest/telemetry-writer.js';
import { createBridgeMetrics, type BridgeMetrics } from '../../bridge/metrics.js';
import type { SyncAck, TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { testLogger } from '../helpers/logger.js';
import { openTestDatabase, startTestPostgres, storedRowCount } from '../helpers/postgres.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';

const poll = { timeout: 15_000, interval: 20 };

let db: Database;
let metrics: BridgeMetrics;
let pipeline: IngestPipeline;
let acks: Array<{ deviceId: string; ack: SyncAck }>;

beforeAll(async () => {
  db = await openTestDatabase(await startTestPostgres(), 'bridge-poison-test', { migrate: true });
  // Test-only: the database refuses one reading with a protocol-class error (08P01), the kind a
  // message's content once triggered on CockroachDB, which is neither a data (22) nor an
  // integrity (23) error. (The product schema has no triggers.)
  await db.none(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.sensor_id = 'poison' THEN RAISE EXCEPTION 'invalid message format' USING ERRCODE = '08P01'; END IF;
      RETURN NEW;
    END $$`);
  await db.none(
    'CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON telemetry_data FOR EACH ROW EXECUTE FUNCTION refuse_poison()',
  );
});

beforeEach(() => {
  acks = [];
  metrics = createBridgeMetrics();
  pipeline = new IngestPipeline({
    write: (messages) => writeTelemetryBatch(db, messages),
    publishAck: (deviceId, ack) => {
      acks.push({ deviceId, ack });
      return Promise.resolve();
    },
    logger: testLogger('pipeline'),
    metrics,
    // a long linger: messages accepted together form one database batch
    limits: { maxRecords: 2000, maxMessages: 500, maxBytes: 4 * 1024 * 1024, lingerMs: 100 },
    failureBackoff: { initialDelayMs: 20, maxDelayMs: 50, multiplier: 2, jitter: 'none' },
  });
  registerCleanup(() => pipeline.close());
});

interface RecordedDelivery extends InboundMessage {
  readonly settled: () => 'acked' | 'released' | 'open';
}

function delivery(deviceId: string, batch: TelemetryBatch): RecordedDelivery {
  let state: 'acked' | 'released' | 'open' = 'open';
  return {
    topic: topics.telemetry(deviceId),
    payload: Buffer.from(JSON.stringify(batch)),
    committed: () => undefined,
    ack: () => void (state = 'acked'),
    release: () => void (state = 'released'),
    isStale: () => false,
    settled: () => state,
  };
}

const batchOf = (...records: TelemetryRecord[]): TelemetryBatch => makeBatch(records);
const ackOf = (batch: TelemetryBatch) => acks.find((entry) => entry.ack.batchId === batch.batchId)?.ack;
const rowsOf = (deviceId: string): Promise<number> => storedRowCount(db, deviceId);
const failedWrites = async (): Promise<number> => (await metrics.batchesFailed.get()).values[0]?.value ?? 0;

describe('a message the database refuses', () => {
  it('is rejected alone (error ack, acknowledged) while the messages batched with it commit', async () => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const good1 = batchOf(makeRecord(), makeRecord());
    const poison = batchOf(makeRecord(), makeRecord({ sensorId: 'poison' }));
    const good2 = batchOf(makeRecord());
    const deliveries = [delivery(a, good1), delivery(b, poison), delivery(c, good2)];

    for (const inbound of deliveries) pipeline.accept(inbound);

    await expect.poll(() => deliveries.map((inbound) => inbound.settled()), poll).toEqual(['acked', 'acked', 'acked']);
    expect(ackOf(good1)).toEqual({ batchId: good1.batchId, accepted: 2, rejected: [], conflicts: 0 });
    expect(ackOf(good2)).toEqual({ batchId: good2.batchId, accepted: 1, rejected: [], conflicts: 0 });
    const reason = expect.stringMatching(/^the database rejected the message: .*invalid message format/);
    expect(ackOf(poison)).toEqual({
      batchId: poison.batchId,
      accepted: 0,
      rejected: poison.records.map((rejected) => ({ id: rejected.id, reason })),
      conflicts: 0,
      error: reason,
    });
    expect([await rowsOf(a), await rowsOf(b), await rowsOf(c)]).toEqual([2, 0, 1]);
    // the batch failed once, then the poison message alone
    expect(await failedWrites()).toBe(2);
  });

  it('rejects nothing when every message fails (a missing table): all are retried and commit once it is back', async () => {
    const devices = [randomUUID(), randomUUID(), randomUUID()];
    const batches = devices.map(() => batchOf(makeRecord()));
    const deliveries = devices.map((deviceId, index) => delivery(deviceId, batches[index] as TelemetryBatch));
    await db.none('ALTER TABLE telemetry_data RENAME TO telemetry_data_away'); // every write: 42P01
    const recover = registerCleanup(() => db.none('ALTER TABLE telemetry_data_away RENAME TO telemetry_data'));
    for (const inbound of deliveries) pipeline.accept(inbound);
    // at least two rounds: the batch, then each message alone, backing off in between
    await expect.poll(failedWrites, poll).toBeGreaterThanOrEqual(8);
    expect(acks).toEqual([]);
    expect(deliveries.map((inbound) => inbound.settled())).toEqual(['open', 'open', 'open']);
    await recover();
    await expect.poll(() => deliveries.map((inbound) => inbound.settled()), poll).toEqual(['acked', 'acked', 'acked']);
    expect(batches.map((batch) => ackOf(batch))).toEqual(
      batches.map((batch) => ({ batchId: batch.batchId, accepted: 1, rejected: [], conflicts: 0 })),
    );
    expect(await Promise.all(devices.map(rowsOf))).toEqual([1, 1, 1]);
  });

  it('rejects nothing when a rule refuses every message (23514): the database, not the messages, is at fault', async () => {
    const devices = [randomUUID(), randomUUID()];
    const batches = devices.map(() => batchOf(makeRecord({ value: 5e12 })));
    const deliveries = devices.map((deviceId, index) => delivery(deviceId, batches[index] as TelemetryBatch));
    await db.none('ALTER TABLE telemetry_data ADD CONSTRAINT plausible_value CHECK (value < 1e9) NOT VALID');
    const recover = registerCleanup(() => db.none('ALTER TABLE telemetry_data DROP CONSTRAINT plausible_value'));
    for (const inbound of deliveries) pipeline.accept(inbound);
    await expect.poll(failedWrites, poll).toBeGreaterThanOrEqual(6);
    expect(acks).toEqual([]);
    expect(deliveries.map((inbound) => inbound.settled())).toEqual(['open', 'open']);
    await recover();
    await expect.poll(() => deliveries.map((inbound) => inbound.settled()), poll).toEqual(['acked', 'acked']);
    expect(await Promise.all(devices.map(rowsOf))).toEqual([1, 1]);
  });
});
