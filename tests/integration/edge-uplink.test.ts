/**
 * The whole edge agent against a real Aedes broker (plain TCP here; the cluster adds mutual TLS)
 * and a stand-in bridge written with a real mqtt.js client. Sensors are real mqtt.js clients.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { MqttClient } from 'mqtt';
import type { BackoffPolicy } from '../../common/retry-policy.js';
import type { DeviceStatus } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { checkTelemetryBatchEnvelope, checkTelemetryRecord } from '../../schemas/validators.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../../edge/agent.js';
import { connectSensor, publishReading } from '../helpers/edge-sensor.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';
import { fullAck, startTestBridge, type ReceivedBatch, type TestBridge } from '../helpers/edge-test-bridge.js';
import { testLogger } from '../helpers/logger.js';
import { CONNECT_TIMEOUT_MS, connectClient } from '../helpers/mqtt-client.js';
import { BASE_TIME_MS, TEST_DEVICE_ID } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';
import { startTestBroker, type TestBroker } from '../helpers/test-broker.js';
import { nextEvent, timeoutFor } from '../helpers/wait.js';

const FAST_RECONNECT: BackoffPolicy = { initialDelayMs: 50, maxDelayMs: 300, multiplier: 2, jitter: 'equal' };
const poll = { timeout: 15_000, interval: 25 };
/** thousands of readings, or a backlog after a broker restart, synced */
const drainPoll = { ...poll, timeout: 20_000 };

let database: TempDatabase;
let broker: TestBroker;
let bridge: TestBridge;
let reader: Client;

/** An edge agent against the test broker, closed at teardown (or earlier by the test). */
async function startAgent(overrides: Partial<EdgeAgentConfig> = {}): Promise<EdgeAgent> {
  const agent = await startEdgeAgent({
    deviceId: TEST_DEVICE_ID,
    dbUrl: database.url,
    sensorPort: 0,
    brokerUrl: broker.url,
    ackTimeoutMs: 5000,
    syncIntervalMs: 60_000,
    sendLingerMs: 10,
    reconnectPolicy: FAST_RECONNECT,
    logger: testLogger('edge'),
    ...overrides,
  });
  registerCleanup(() => agent.close());
  return agent;
}

const sensorFor = (agent: EdgeAgent): Promise<MqttClient> => connectSensor(agent.sensorPort);

/** Publishes readings with explicit ids and timestamps; resolves when every PUBACK is in. */
async function publishWave(
  sensor: MqttClient,
  count: number,
  firstTsMs: number,
  order: 'ascending' | 'descending' = 'ascending',
): Promise<{ id: string; ts: number }[]> {
  const readings = Array.from({ length: count }, (_, index) => ({ id: crypto.randomUUID(), ts: firstTsMs + index }));
  const sendOrder = order === 'ascending' ? readings : [...readings].reverse();
  await Promise.all(
    sendOrder.map((reading, index) =>
      publishReading(sensor, 'sensors/boiler-1/temperature', { value: index, unit: 'C', ...reading }),
    ),
  );
  return readings;
}

async function syncLog(): Promise<Record<string, unknown>[]> {
  const result = await reader.execute(
    'SELECT status, records_count, error_message FROM sync_log ORDER BY started_at, completed_at',
  );
  return result.rows as unknown as Record<string, unknown>[];
}

beforeEach(async () => {
  database = tempDatabase('edge-uplink');
  broker = await startTestBroker();
  bridge = await startTestBridge(broker.url);
  reader = database.openReader();
});

describe('edge uplink', () => {
  it('sends readings in valid batches, marks them synced on the sync/ack and publishes a retained online status', async () => {
    const agent = await startAgent();
    const sensor = await sensorFor(agent);
    const readings = await publishWave(sensor, 30, BASE_TIME_MS);
    await publishReading(sensor, 'sensors/boiler-1/temperature', 'not a reading');

    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 30 });
    expect(await agent.stats()).toMatchObject({
      pending: 0,
      syncing: 0,
      failed: 0,
      rejectedReadings: 1,
      inFlightBatches: 0,
      connected: true,
    });
    expect(new Set(bridge.receivedRecordIds())).toEqual(new Set(readings.map((reading) => reading.id)));
    for (const { deviceId, batch } of bridge.received) {
      expect(deviceId).toBe(TEST_DEVICE_ID);
      expect(checkTelemetryBatchEnvelope(batch).ok).toBe(true);
      for (const record of batch.records) expect(checkTelemetryRecord(record)).toEqual({ ok: true, value: record });
    }
    const log = await syncLog();
    expect(log.length).toBe(bridge.received.length);
    expect(log.every((entry) => entry['status'] === 'success')).toBe(true);

    const watcher = await connectClient(broker.url, { clientId: `watcher-${Date.now()}` });
    const retained = nextEvent<[string, Buffer]>(watcher, 'message');
    await watcher.subscribeAsync(topics.status(TEST_DEVICE_ID), { qos: 1 });
    const [, status] = await retained;
    expect(JSON.parse(status.toString()) as DeviceStatus).toMatchObject({ online: true });

    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/^edge_readings_accepted_total 30$/m);
    expect(metrics).toMatch(/^edge_readings_rejected_total 1$/m);
    expect(metrics).toMatch(/^edge_readings_pending 0$/m);
    expect(metrics).toMatch(new RegExp(`^edge_batch_ack_latency_seconds_count ${bridge.received.length}$`, 'm'));
  });

  it('marks readings the bridge rejected as failed with its reason; the sync log says partial', async () => {
    const agent = await startAgent();
    const sensor = await sensorFor(agent);
    let rejectedId = '';
    bridge.mode = (received) => {
      rejectedId ||= received.batch.records[0]?.id ?? '';
      return fullAck(received.batch, [rejectedId]);
    };
    await publishWave(sensor, 5, BASE_TIME_MS);
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 4, failed: 1 });
    const failed = await reader.execute({
      sql: 'SELECT sync_status, sync_error FROM telemetry_data WHERE id = ?',
      args: [rejectedId],
    });
    expect(failed.rows[0]).toMatchObject({ sync_status: 'failed', sync_error: 'rejected by the test bridge' });
    expect((await syncLog())[0]).toMatchObject({ status: 'partial', records_count: 5 });
  });

  it('marks only the rejections an ack names failed and sends the rest again when it counts more than it lists', async () => {
    const agent = await startAgent();
    const sensor = await sensorFor(agent);
    // the first answer to each batch id counts 3 rejections but names only 1 (issue 7, item 10)
    const answered = new Set<string>();
    let rejectedIds: string[] = [];
    bridge.mode = (received) => {
      const { batch } = received;
      if (rejectedIds.length === 0) rejectedIds = batch.records.slice(0, 3).map((record) => record.id);
      const full = fullAck(batch, rejectedIds);
      if (answered.has(batch.batchId)) return full;
      answered.add(batch.batchId);
      return { ...full, rejected: full.rejected.slice(0, 1), rejectedCount: full.rejected.length };
    };
    await publishWave(sensor, 10, BASE_TIME_MS);
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 7, failed: 3, pending: 0, syncing: 0 });
    // the readings not named the first time went out again under the same batch id
    const first = bridge.received[0]!.batch;
    const resend = bridge.received.find((r, i) => i > 0 && r.batch.batchId === first.batchId);
    expect(resend?.batch.records.map((record) => record.id)).toEqual(first.records.slice(1).map((record) => record.id));
    expect((await syncLog())[0]).toMatchObject({
      status: 'partial',
      error_message: expect.stringMatching(/2 not named/),
    });
  });

  it('puts a batch answered "retry later" back to pending, sends nothing before retryAfterMs, then syncs it', async () => {
    const agent = await startAgent();
    const sensor = await sensorFor(agent);
    const retryAfterMs = 1500;
    let refusedAtMs = 0;
    bridge.mode = (received) => {
      if (refusedAtMs !== 0) return fullAck(received.batch);
      refusedAtMs = Date.now();
      return { batchId: received.batch.batchId, accepted: 0, rejected: [], conflicts: 0, retryAfterMs };
    };
    await publishWave(sensor, 5, BASE_TIME_MS);
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 5, failed: 0, pending: 0 });
    const [refused, again] = bridge.received;
    expect(again?.batch.batchId).toBe(refused?.batch.batchId);
    expect(again!.receivedAtMs - refusedAtMs).toBeGreaterThanOrEqual(retryAfterMs - 50);
    // no failure recorded for the refusal: only the success of the re-send
    expect(await syncLog()).toEqual([expect.objectContaining({ status: 'success', records_count: 5 })]);
  });

  it(
    'keeps accepting readings while the broker is down and drains them oldest first when it is back',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, 3 * poll.timeout, drainPoll.timeout) },
    async () => {
      const agent = await startAgent();
      const sensor = await sensorFor(agent);
      await expect.poll(() => agent.stats(), poll).toMatchObject({ connected: true });

      const port = broker.port;
      await broker.close();
      await expect.poll(() => agent.stats(), poll).toMatchObject({ connected: false });

      const readings = await publishWave(sensor, 40, BASE_TIME_MS, 'descending'); // newest first on the wire
      const offline = await agent.stats();
      expect(offline).toMatchObject({ pending: 40, syncing: 0, inFlightBatches: 0, connected: false });

      // The restarted test broker has no persistence, so the bridge must subscribe again before the
      // first batch arrives (the real cluster keeps the bridge's session). Until then the device is
      // refused (CONNACK 5), which also exercises the uplink's handling of an authorization failure.
      let bridgeResubscribed = false;
      const subscriptionsBefore = bridge.subscriptions;
      broker = await startTestBroker({
        port,
        authenticate: (client, _username, _password, done) =>
          done(null, client.id !== TEST_DEVICE_ID || bridgeResubscribed), // a refusal is CONNACK 5, not authorized
      });
      await expect.poll(() => bridge.subscriptions, poll).toBeGreaterThan(subscriptionsBefore);
      bridgeResubscribed = true;
      await expect.poll(() => agent.stats(), drainPoll).toMatchObject({ synced: 40 });
      const firstSeen = [...new Set(bridge.receivedRecordIds())];
      expect(firstSeen).toEqual(readings.map((reading) => reading.id)); // ascending timestamps
    },
  );

  it('reports with each batch how many readings are still pending, and 0 once drained', async () => {
    bridge.mode = 'ignore'; // the first batches stay unacknowledged, so the rest piles up behind them
    const agent = await startAgent({ maxInFlightBatches: 1 });
    const sensor = await sensorFor(agent);
    const readings = await publishWave(sensor, 2500, BASE_TIME_MS);
    await expect.poll(() => bridge.received.length, poll).toBeGreaterThanOrEqual(1);
    bridge.mode = 'ack';
    for (const entry of [...bridge.received]) await bridge.acknowledge(entry);
    await expect.poll(() => agent.stats(), drainPoll).toMatchObject({ synced: 2500 });

    expect(new Set(bridge.receivedRecordIds())).toEqual(new Set(readings.map((reading) => reading.id)));
    const reported = bridge.received.map((entry) => entry.batch.pendingCount);
    expect(reported.every((count) => typeof count === 'number' && count >= 0)).toBe(true);
    expect(Math.max(...(reported as number[]))).toBeGreaterThan(0); // a backlog was reported while draining
    expect(reported.at(-1)).toBe(0);
  });

  it('sends a batch without a sync/ack again, under the same batch id, after the timeout', async () => {
    bridge.mode = 'ignore';
    const agent = await startAgent({ ackTimeoutMs: 400 });
    const sensor = await sensorFor(agent);
    const readings = await publishWave(sensor, 5, BASE_TIME_MS);
    const ids = readings.map((reading) => reading.id);

    await expect.poll(() => bridge.received.length, poll).toBeGreaterThanOrEqual(2);
    const [first, second] = bridge.received;
    expect(second?.batch.batchId).toBe(first?.batch.batchId);
    expect(second?.batch.records.map((record) => record.id)).toEqual(ids);
    expect((await syncLog())[0]).toMatchObject({ status: 'failed', records_count: 5 });
    expect(String((await syncLog())[0]?.['error_message'])).toMatch(
      /^no sync\/ack within 400 ms for batch .*; 5 readings back to pending, to be sent again in the same batch$/,
    );

    bridge.mode = 'ack';
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 5 });
  });

  it('waits twice as long for the ack of each re-send of the same batch (a long bridge outage)', async () => {
    bridge.mode = 'ignore';
    const agent = await startAgent({ ackTimeoutMs: 300 });
    const sensor = await sensorFor(agent);
    await publishWave(sensor, 3, BASE_TIME_MS);
    await expect.poll(() => bridge.received.length, { ...poll, timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    const [first, second, third] = bridge.received as [ReceivedBatch, ReceivedBatch, ReceivedBatch];
    expect(new Set([first.batch.batchId, second.batch.batchId, third.batch.batchId]).size).toBe(1);
    const firstWait = second.receivedAtMs - first.receivedAtMs;
    const secondWait = third.receivedAtMs - second.receivedAtMs;
    expect(firstWait).toBeGreaterThanOrEqual(280);
    expect(secondWait).toBeGreaterThanOrEqual(580); // 2 × 300 ms
    bridge.mode = 'ack';
    await bridge.acknowledge(third);
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 3 });
  });

  it('puts a batch whose ack times out while offline back to pending, and syncs it after the reconnect', async () => {
    bridge.mode = 'ignore';
    // reconnects only after the ack timeout, so the batch times out while the device is offline
    const agent = await startAgent({
      ackTimeoutMs: 400,
      reconnectPolicy: { initialDelayMs: 1500, maxDelayMs: 1500, multiplier: 1, jitter: 'none' },
    });
    const sensor = await sensorFor(agent);
    await publishWave(sensor, 5, BASE_TIME_MS);
    await expect.poll(() => bridge.received.length, poll).toBe(1);
    broker.dropConnection(TEST_DEVICE_ID);
    await expect.poll(() => agent.stats(), poll).toMatchObject({ connected: false, pending: 5, syncing: 0 });
    expect(String((await syncLog())[0]?.['error_message'])).toMatch(
      /; 5 readings back to pending, to be sent again in the same batch$/,
    );

    // the late ack (queued in the device's session) confirms the readings unless they were claimed again first
    await bridge.acknowledge(bridge.received[0] as (typeof bridge.received)[number]);
    bridge.mode = 'ack';
    await expect.poll(() => agent.stats(), poll).toMatchObject({ synced: 5, syncing: 0, pending: 0 });
  });

  it('a sync/ack that comes after the timeout still confirms readings sent again since (a slow bridge)', async () => {
    // every ack takes longer than the ack timeout: by the time it comes, its readings were sent again in a new batch
    const ackDelayMs = 600;
    bridge.mode = (received) => {
      setTimeout(() => void bridge.acknowledge(received), ackDelayMs);
      return null;
    };
    const agent = await startAgent({ ackTimeoutMs: 400 });
    const sensor = await sensorFor(agent);
    await publishWave(sensor, 5, BASE_TIME_MS);

    // without the fix every late ack names a batch id its readings no longer carry: nothing is ever synced
    await expect.poll(() => agent.stats(), { ...poll, timeout: 5000 }).toMatchObject({ synced: 5 });
    expect(await agent.stats()).toMatchObject({ pending: 0, syncing: 0, failed: 0 });
    expect(new Set(bridge.received.map((entry) => entry.batch.batchId)).size).toBe(1); // re-sent, never renamed
  });

  it('keeps at most four small batches per in-flight slot waiting for their ack', async () => {
    bridge.mode = 'ignore';
    // one slot: a full batch's worth of readings (1000), or up to 4 batches of a few readings each
    const agent = await startAgent({ maxInFlightBatches: 1, ackTimeoutMs: 30_000 });
    const sensor = await sensorFor(agent);
    for (let wave = 0; wave < 4; wave++) {
      await publishWave(sensor, 3, BASE_TIME_MS + 100 * wave);
      await expect.poll(() => bridge.received.length, poll).toBe(wave + 1);
    }
    const fifth = await publishWave(sensor, 3, BASE_TIME_MS + 400);

    // a bounded observation window (several lingers long): the fifth wave must stay pending
    const observedUntil = Date.now() + 300;
    while (Date.now() < observedUntil) {
      const stats = await agent.stats();
      expect(stats).toMatchObject({ inFlightBatches: 4, syncing: 12, pending: 3 });
      expect(bridge.received.length).toBe(4);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    await bridge.acknowledge(bridge.received[0] as (typeof bridge.received)[number]);
    await expect.poll(() => bridge.received.length, poll).toBe(5);
    expect(bridge.received[4]?.batch.records.map((record) => record.id)).toEqual(fifth.map((reading) => reading.id));
    expect(await agent.stats()).toMatchObject({ synced: 3, syncing: 12, inFlightBatches: 4 });
  });

  it("re-sends readings left 'syncing' by a stopped agent after its restart", async () => {
    bridge.mode = 'ignore';
    const first = await startAgent({ ackTimeoutMs: 60_000 });
    const sensor = await sensorFor(first);
    const readings = await publishWave(sensor, 6, BASE_TIME_MS);
    await expect
      .poll(async () => ({ syncing: (await first.stats()).syncing, sent: bridge.received.length }), poll)
      .toEqual({ syncing: 6, sent: 1 });
    await sensor.endAsync(true);
    await first.close();
    const left = await reader.execute("SELECT count(*) AS n FROM telemetry_data WHERE sync_status = 'syncing'");
    expect(left.rows[0]?.['n']).toBe(6);

    bridge.mode = 'ack';
    const second = await startAgent();
    await expect.poll(() => second.stats(), poll).toMatchObject({ synced: 6 });
    expect(bridge.received.length).toBeGreaterThanOrEqual(2);
    expect(bridge.received.at(-1)?.batch.records.map((record) => record.id)).toEqual(
      readings.map((reading) => reading.id),
    );
    // under the same batch id: an ack for the first send that arrives after the restart still counts
    expect(bridge.received.at(-1)?.batch.batchId).toBe(bridge.received[0]?.batch.batchId);
  });

  it('serves /metrics when asked; close() called twice returns the same promise and closes the listeners', async () => {
    const agent = await startAgent({ metricsPort: 0 });
    const metrics = await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^edge_readings_accepted_total 0$/m);

    const first = agent.close();
    expect(agent.close()).toBe(first);
    await Promise.all([first, agent.close()]);
    await expect(agent.close()).resolves.toBeUndefined();
    // the listeners are closed for real
    await expect(connectSensor(agent.sensorPort)).rejects.toThrow(/ECONNREFUSED/);
    await expect(fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).rejects.toThrow();
  });
});
