/**
 * The bridge end to end: a real Aedes broker (plain TCP here; TLS is the broker's concern), real
 * mqtt.js "devices", the bridge service, and PostgreSQL at SERIALIZABLE.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import type { BridgeConfig, RunningBridge } from '../../bridge/service.js';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { CONTROL_REVOCATIONS_TOPIC, topics } from '../../schemas/topics.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import {
  lockTable,
  openTestDatabase,
  startTestPostgres,
  storedRowCount,
  type TestPostgres,
} from '../helpers/postgres.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';
import { CONNECT_TIMEOUT_MS } from '../helpers/mqtt-client.js';
import { connectTelemetryDevice } from '../helpers/telemetry-device.js';
import { startTestBroker, type TestBroker } from '../helpers/test-broker.js';
import { timeoutFor } from '../helpers/wait.js';

interface ObservedBroker extends TestBroker {
  /** what the broker received from the bridge, in order: PUBLISH (sync/ack) and PUBACK (telemetry) packets */
  bridgeEvents: string[];
}

async function startObservedBroker(bridgeClientId: string): Promise<ObservedBroker> {
  const bridgeEvents: string[] = [];
  const broker = await startTestBroker({
    // authorizePublish runs as the broker handles an incoming PUBLISH, 'ack' as it handles a PUBACK;
    // the revocation list the bridge publishes on connect (bridge/revocation-publisher.ts) is not ingest
    authorizePublish: (client, packet, callback) => {
      if (client?.id === bridgeClientId && packet.topic !== CONTROL_REVOCATIONS_TOPIC)
        bridgeEvents.push(`publish ${packet.topic} ${packet.payload.toString()}`);
      callback(null);
    },
  });
  broker.aedes.on('ack', (packet, client) => {
    if (client?.id === bridgeClientId && packet !== undefined && 'topic' in packet)
      bridgeEvents.push(`puback ${packet.topic} ${packet.payload.toString()}`);
  });
  return { ...broker, bridgeEvents };
}

let postgres: TestPostgres;
let db: Database;

/** A broker with a bridge connected to it, both stopped after the test. */
async function startSystem(
  overrides: Partial<BridgeConfig> = {},
): Promise<{ broker: ObservedBroker; bridge: RunningBridge; clientId: string }> {
  const clientId = `bridge-${randomUUID().slice(0, 8)}`;
  const broker = await startObservedBroker(clientId);
  const bridge = await startBridgeService({
    databaseUrl: postgres.connectionString,
    brokerUrl: broker.url,
    clientId,
    dbPoolSize: 5,
    http: { host: '127.0.0.1', port: 0 },
    ...overrides,
  });
  return { broker, bridge, clientId };
}

const device = (broker: TestBroker) => connectTelemetryDevice(broker.url);

/** The bridge's transaction waiting on a lock held by the test. */
async function bridgeWaitsOnLock(clientId: string): Promise<boolean> {
  const rows = await db.any("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [
    clientId,
  ]);
  return rows.length > 0;
}

const rowCount = (deviceId: string): Promise<number> => storedRowCount(db, deviceId);

const poll = { timeout: 15_000, interval: 20 };
/** 50,000 rows from 10 devices: on a loaded machine this takes much longer than one message */
const throughputPoll = { timeout: 60_000, interval: 50 };

beforeAll(async () => {
  postgres = await startTestPostgres();
  db = await openTestDatabase(postgres, 'bridge-mqtt-test', { poolSize: 4 });
});

describe('telemetry ingest over MQTT', () => {
  it('commits the rows and answers with a sync/ack carrying the right counts', async () => {
    const { broker } = await startSystem();
    const sensor = await device(broker);
    const good = [makeRecord(), makeRecord({ unit: null }), makeRecord({ metadata: { fw: '1.2' } })];
    const batch = makeBatch([...good, { ...makeRecord(), value: 'warm' }], { pendingCount: 12 });

    await sensor.send(batch);

    await expect.poll(() => sensor.acks.length, poll).toBe(1);
    expect(sensor.acks[0]).toEqual({
      batchId: batch.batchId,
      accepted: 3,
      rejected: [{ id: (batch.records[3] as TelemetryRecord).id, reason: '/value must be number' }],
      conflicts: 0,
    });
    expect(await rowCount(sensor.id)).toBe(3);
    expect(
      await db.one('SELECT last_sync_status, pending_records_count FROM sync_status WHERE device_id = $1', [sensor.id]),
    ).toEqual({
      last_sync_status: 'partial',
      pending_records_count: '12', // BIGINT arrives as a string
    });

    // the same batch again (an edge that missed the ack): same answer, no new rows
    await sensor.send(batch);
    await expect.poll(() => sensor.acks.length, poll).toBe(2);
    expect(sensor.acks[1]).toEqual(sensor.acks[0]);
    expect(await rowCount(sensor.id)).toBe(3);
  });

  it('answers a malformed message with an error ack and goes on with the next one', async () => {
    const { broker } = await startSystem();
    const sensor = await device(broker);
    const next = makeBatch([makeRecord()]);

    await sensor.send('{"batchId": "not closed"');
    await sensor.send(makeBatch([makeRecord()], { batchId: 'not-a-uuid' }));
    await sensor.send(next);

    await expect.poll(() => sensor.acks.length, poll).toBe(3);
    expect(sensor.acks[0]).toMatchObject({
      batchId: null,
      accepted: 0,
      rejected: [],
      conflicts: 0,
      error: expect.stringMatching(/not valid JSON/),
    });
    expect(sensor.acks[1]).toMatchObject({
      batchId: 'not-a-uuid',
      accepted: 0,
      error: expect.stringMatching(/batchId must match format "uuid"/),
    });
    expect(sensor.acks[1]?.rejected).toHaveLength(1);
    expect(sensor.acks[2]).toEqual({ batchId: next.batchId, accepted: 1, rejected: [], conflicts: 0 });
    expect(await rowCount(sensor.id)).toBe(1);
  });

  it('reports conflicts to the device and to conflict_log', async () => {
    const { broker } = await startSystem();
    const sensor = await device(broker);
    const id = randomUUID();
    await sensor.send(makeBatch([makeRecord({ id, version: 2, value: 2 })]));
    await expect.poll(() => sensor.acks.length, poll).toBe(1);

    await sensor.send(makeBatch([makeRecord({ id, version: 1, value: 1 })]));

    await expect.poll(() => sensor.acks.length, poll).toBe(2);
    expect(sensor.acks[1]).toMatchObject({ accepted: 1, conflicts: 1, rejected: [] });
    expect(await db.one('SELECT conflict_type FROM conflict_log WHERE record_id = $1', [id])).toEqual({
      conflict_type: 'stale-version',
    });
  });

  it('PUBACKs a message only after its commit and its sync/ack', async () => {
    const { broker, bridge, clientId } = await startSystem();
    const sensor = await device(broker);
    const batch = makeBatch([makeRecord()]);
    const lock = await lockTable(db, 'telemetry_data');
    await sensor.send(batch);
    await expect.poll(() => bridgeWaitsOnLock(clientId), poll).toBe(true);

    // the bridge holds the message inside its transaction: nothing confirmed yet
    expect(broker.bridgeEvents).toEqual([]);
    expect(sensor.acks).toEqual([]);
    expect(await bridge.metrics.messagesInFlight.get()).toMatchObject({ values: [{ value: 1 }] });

    await lock.commit();
    await expect.poll(() => broker.bridgeEvents.length, poll).toBe(2);
    expect(broker.bridgeEvents[0]).toMatch(new RegExp(`^publish ${topics.syncAck(sensor.id)} .*${batch.batchId}`));
    expect(broker.bridgeEvents[1]).toMatch(new RegExp(`^puback ${topics.telemetry(sensor.id)} .*${batch.batchId}`));
    expect(await rowCount(sensor.id)).toBe(1);
    await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(0);
  });

  it(
    'holds at most maxInFlight messages while the database waits, and answers the rest "retry later" without storing them',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, 4 * poll.timeout) },
    async () => {
      // G7: the bridge never stops reading (that held every device behind one, in the broker):
      // a message over the bound is answered with retryAfterMs, acknowledged, and not stored
      const { broker, bridge, clientId } = await startSystem({ maxInFlight: 2 });
      const sensor = await device(broker);
      const batches = Array.from({ length: 5 }, () => makeBatch([makeRecord()]));
      const held = async () => (await bridge.metrics.messagesHeld.get()).values[0]?.value;
      const lock = await lockTable(db, 'telemetry_data');
      for (const batch of batches) await sensor.send(batch);
      await expect.poll(() => bridgeWaitsOnLock(clientId), poll).toBe(true);
      await expect.poll(() => sensor.acks.length, poll).toBe(3);
      expect(await held()).toBe(2);
      expect(sensor.acks).toEqual(
        batches
          .slice(2)
          .map(({ batchId }) => ({ batchId, accepted: 0, rejected: [], conflicts: 0, retryAfterMs: 1000 })),
      );
      await lock.commit();
      await expect.poll(() => sensor.acks.length, poll).toBe(5);
      expect(sensor.acks.slice(3)).toEqual(
        batches.slice(0, 2).map(({ batchId }) => ({ batchId, accepted: 1, rejected: [], conflicts: 0 })),
      );
      expect(await rowCount(sensor.id)).toBe(2);
      await expect.poll(held, poll).toBe(0);
      await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(0);
      const refused = (await bridge.metrics.messagesRefused.get()).values;
      expect(refused).toEqual([expect.objectContaining({ labels: { reason: 'bridge-messages' }, value: 3 })]);
    },
  );

  it('answers a message the database refuses with an error ack, without failing its batch neighbours', async () => {
    // A rule the validators do not know about: the database rejects the value (SQLSTATE 23514).
    await db.none('ALTER TABLE telemetry_data ADD CONSTRAINT plausible_value CHECK (value < 1e9) NOT VALID');
    registerCleanup(() => db.none('ALTER TABLE telemetry_data DROP CONSTRAINT plausible_value'));
    const { broker, bridge, clientId } = await startSystem();
    const [first, bad, after] = await Promise.all([device(broker), device(broker), device(broker)]);
    // hold the first batch in the database so that the next two messages share one batch
    const lock = await lockTable(db, 'telemetry_data');
    await first.send(makeBatch([makeRecord()]));
    await expect.poll(() => bridgeWaitsOnLock(clientId), poll).toBe(true);
    await bad.send(makeBatch([makeRecord({ value: 5e12 }), makeRecord()]));
    await after.send(makeBatch([makeRecord()]));
    await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(3);
    await lock.commit();

    await expect.poll(() => [first.acks.length, bad.acks.length, after.acks.length], poll).toEqual([1, 1, 1]);
    expect(first.acks[0]).toMatchObject({ accepted: 1, rejected: [] });
    expect(after.acks[0]).toMatchObject({ accepted: 1, rejected: [] });
    expect(bad.acks[0]).toMatchObject({ accepted: 0, error: expect.stringMatching(/plausible_value/) });
    expect(bad.acks[0]?.rejected).toHaveLength(2);
    expect([await rowCount(first.id), await rowCount(bad.id), await rowCount(after.id)]).toEqual([1, 0, 1]);
  });

  it('keeps messages unacknowledged while the database fails, backs off, and commits them when it recovers', async () => {
    const { broker, bridge } = await startSystem();
    const sensor = await device(broker);
    const batch = makeBatch([makeRecord(), makeRecord()]);
    await db.none('ALTER TABLE telemetry_data RENAME TO telemetry_data_away'); // every batch fails: 42P01
    const recover = registerCleanup(() => db.none('ALTER TABLE telemetry_data_away RENAME TO telemetry_data'));
    await sensor.send(batch);
    await expect
      .poll(async () => (await bridge.metrics.batchesFailed.get()).values[0]?.value ?? 0, poll)
      .toBeGreaterThanOrEqual(2);
    expect(sensor.acks).toEqual([]);
    expect(broker.bridgeEvents).toEqual([]);
    await recover();
    await expect.poll(() => sensor.acks.length, poll).toBe(1);
    expect(sensor.acks[0]).toMatchObject({ batchId: batch.batchId, accepted: 2 });
    expect(await rowCount(sensor.id)).toBe(2);
  });

  it('serves /metrics, and /healthz reflects the database and the broker', async () => {
    const { broker, bridge } = await startSystem();
    const sensor = await device(broker);
    await sensor.send(makeBatch([makeRecord(), makeRecord()]));
    await expect.poll(() => sensor.acks.length, poll).toBe(1);

    const base = `http://127.0.0.1:${bridge.httpPort}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^bridge_telemetry_records_ingested_total 2$/m);
    expect(metrics).toMatch(/^bridge_telemetry_batch_commit_seconds_count 1$/m);
    const healthy = await fetch(`${base}/healthz`);
    expect(healthy.status).toBe(200);
    expect(await healthy.json()).toEqual({ database: true, broker: true });

    await broker.close();
    await expect.poll(async () => (await fetch(`${base}/healthz`)).status, poll).toBe(503);
    expect(await bridge.health()).toEqual({ database: true, broker: false });
  });

  it(
    'ingests many devices concurrently (throughput)',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, throughputPoll.timeout) },
    async () => {
      const { broker, bridge } = await startSystem();
      const devices = await Promise.all(Array.from({ length: 10 }, () => device(broker)));
      const messagesPerDevice = 10;
      const recordsPerMessage = 500;
      const batches = devices.map(() =>
        Array.from({ length: messagesPerDevice }, () =>
          makeBatch(Array.from({ length: recordsPerMessage }, () => makeRecord())),
        ),
      );

      const started = performance.now();
      await Promise.all(
        devices.map(async (d, i) => {
          for (const batch of batches[i] ?? []) await d.send(batch);
        }),
      );
      await expect.poll(() => devices.every((d) => d.acks.length === messagesPerDevice), throughputPoll).toBe(true);
      const seconds = (performance.now() - started) / 1000;

      const total = devices.length * messagesPerDevice * recordsPerMessage;
      expect(devices.flatMap((d) => d.acks).every((ack) => ack.accepted === recordsPerMessage)).toBe(true);
      expect(
        (
          await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE device_id IN ($1:csv)', [
            devices.map((d) => d.id),
          ])
        ).n,
      ).toBe(total);
      const commits =
        (await bridge.metrics.batchCommitSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ??
        0;
      console.info(
        `throughput: ${total} rows in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} rows/s over ${commits} transactions`,
      );
      expect(commits).toBeLessThan(devices.length * messagesPerDevice); // messages shared transactions
    },
  );

  it('close() called twice returns the same promise, and calling it after it finished resolves again', async () => {
    const { bridge } = await startSystem();
    const first = bridge.close();
    expect(bridge.close()).toBe(first);
    await first;
    await expect(bridge.close()).resolves.toBeUndefined();
    // the HTTP endpoint is closed for real
    await expect(fetch(`http://127.0.0.1:${bridge.httpPort}/healthz`)).rejects.toThrow();
  });
});
