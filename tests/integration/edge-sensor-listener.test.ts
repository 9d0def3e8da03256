/**
 * The local sensor listener with a real Aedes, real mqtt.js sensors and a real libSQL file:
 * a PUBACK means the reading is committed; a malformed reading is acknowledged, recorded and
 * announced without disconnecting the sensor; a failing database withholds the PUBACK.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { MqttClient } from 'mqtt';
import { newId } from '../../common/ids.js';
import type { SensorReadingError, TelemetryRecord } from '../../schemas/messages.js';
import { GroupCommitWriter } from '../../edge/ingest/group-commit.js';
import { startSensorListener, type SensorListener } from '../../edge/ingest/sensor-listener.js';
import { EdgeMetrics } from '../../edge/metrics.js';
import type { TelemetryStore } from '../../edge/store/telemetry-store.js';
import { connectSensor, publishReading } from '../helpers/edge-sensor.js';
import { tempTelemetryStore } from '../helpers/edge-temp-db.js';
import { testLogger } from '../helpers/logger.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';
import { nextEvent } from '../helpers/wait.js';

let store: TelemetryStore;
let writer: GroupCommitWriter<TelemetryRecord>;
let listener: SensorListener;
let metrics: EdgeMetrics;
let reader: Client;
/** extra latency before each commit (a slow disk), so that an early PUBACK could not hide behind a fast commit */
let commitDelayMs = 0;

const sensor = (): Promise<MqttClient> => connectSensor(listener.port);

async function storedIds(): Promise<Set<string>> {
  const result = await reader.execute('SELECT id FROM telemetry_data');
  return new Set(result.rows.map((row) => row['id'] as string));
}

beforeEach(async () => {
  ({ store, reader } = await tempTelemetryStore('edge-listener'));
  commitDelayMs = 0;
  writer = new GroupCommitWriter<TelemetryRecord>({
    commit: async (records) => {
      if (commitDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, commitDelayMs));
      return store.insertReadings(records);
    },
  });
  registerCleanup(() => writer.close());
  metrics = new EdgeMetrics(() => store.countPending());
  listener = await startSensorListener({
    deviceId: TEST_DEVICE_ID,
    port: 0,
    writer,
    store,
    logger: testLogger('edge'),
    metrics,
  });
  registerCleanup(() => listener.close());
});

describe('sensor listener', () => {
  it('listens on the port it reports', () => {
    expect(listener.port).toBeGreaterThan(0);
  });

  it('sends the PUBACK only after the reading is committed in libSQL', async () => {
    const client = await sensor();
    commitDelayMs = 50;
    const ids = Array.from({ length: 200 }, () => newId());
    // all in flight at once; each PUBACK is checked against an independent connection as it arrives
    const committedAtPuback = await Promise.all(
      ids.map((id, index) =>
        publishReading(client, 'sensors/boiler-1/temperature', { value: index, id }).then(async () => {
          const result = await reader.execute({ sql: 'SELECT value FROM telemetry_data WHERE id = ?', args: [id] });
          return result.rows[0]?.['value'] === index;
        }),
      ),
    );
    expect(committedAtPuback.filter((ok) => !ok)).toEqual([]);
    expect(await metrics.readingsAccepted.get()).toMatchObject({ values: [{ value: 200 }] });
  });

  it('acknowledges, records and announces a malformed reading, and keeps the sensor connected', async () => {
    const client = await sensor();
    await client.subscribeAsync('sensors/#', { qos: 1 });
    const notice = new Promise<{ topic: string; error: SensorReadingError }>((resolve) => {
      client.on('message', (topic, payload) => {
        if (topic.endsWith('/error')) resolve({ topic, error: JSON.parse(payload.toString()) as SensorReadingError });
      });
    });
    let closed = false;
    client.on('close', () => (closed = true));

    await publishReading(client, 'sensors/boiler-1/pressure', '{"value": oops}'); // resolves on PUBACK
    const { topic, error } = await notice;
    expect(topic).toBe('sensors/boiler-1/pressure/error');
    expect(error).toMatchObject({ topic: 'sensors/boiler-1/pressure', payload: '{"value": oops}' });
    expect(error.error).toMatch(/^payload is not valid JSON/);
    const rejected = await reader.execute('SELECT topic, payload, reason FROM rejected_readings');
    expect(rejected.rows).toHaveLength(1);
    expect(rejected.rows[0]).toMatchObject({ topic: 'sensors/boiler-1/pressure', payload: '{"value": oops}' });

    const goodId = newId();
    await publishReading(client, 'sensors/boiler-1/pressure', { value: 1.5, unit: 'bar', id: goodId });
    expect((await storedIds()).has(goodId)).toBe(true);
    expect(closed).toBe(false);
    expect(await metrics.readingsRejected.get()).toMatchObject({ values: [{ value: 1 }] });
  });

  it('acknowledges and records a publish outside sensors/{sensorId}/{dataType} without disconnecting', async () => {
    const client = await sensor();
    let closed = false;
    client.on('close', () => {
      closed = true;
    });
    await client.publishAsync('devices/x/telemetry', '{}', { qos: 1 });
    const rejected = await reader.execute('SELECT topic, reason FROM rejected_readings');
    expect(rejected.rows).toHaveLength(1);
    expect(rejected.rows[0]).toMatchObject({ topic: 'devices/x/telemetry' });
    expect(rejected.rows[0]?.['reason'] as string).toMatch(
      /sensors may publish only on sensors\/\{sensorId\}\/\{dataType\}/,
    );

    const goodId = newId();
    await publishReading(client, 'sensors/boiler-1/pressure', { value: 2, id: goodId });
    expect(await storedIds()).toEqual(new Set([goodId]));
    expect(closed).toBe(false);
  });

  it('refuses a reading whose metadata nests too deeply to store, without failing the readings committed with it', async () => {
    const poisoner = await sensor();
    const neighbour = await sensor();
    let poisonerClosed = false;
    poisoner.on('close', () => (poisonerClosed = true));
    commitDelayMs = 50; // both readings land in the same group commit
    const depth = 5000; // about 10 KiB: within the payload limit, but deeper than JSON.stringify can recurse
    const deep = `{"value": 1, "metadata": {"a": ${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    const goodId = newId();

    // each publish ends in its PUBACK, or in its connection closing without one
    const outcome = (client: MqttClient, topic: string, payload: unknown) =>
      Promise.race([
        publishReading(client, topic, payload).then(() => 'acknowledged'),
        nextEvent(client, 'close').then(() => 'closed'),
      ]);
    const outcomes = await Promise.all([
      outcome(poisoner, 'sensors/boiler-1/temperature', deep),
      outcome(neighbour, 'sensors/boiler-2/temperature', { value: 2, id: goodId }),
    ]);

    expect(outcomes).toEqual(['acknowledged', 'acknowledged']);
    expect(await storedIds()).toEqual(new Set([goodId]));
    const rejected = await reader.execute('SELECT topic, reason FROM rejected_readings');
    expect(rejected.rows).toHaveLength(1);
    expect(rejected.rows[0]?.['reason'] as string).toMatch(/metadata .*nested/);
    expect(poisonerClosed).toBe(false);
  });

  it('withholds the PUBACK and drops the connection when the reading cannot be committed', async () => {
    const client = await sensor();
    await publishReading(client, 'sensors/boiler-1/temperature', 20);
    await store.close(); // every later commit fails
    let acknowledged = false;
    const closing = nextEvent(client, 'close');
    client.publish('sensors/boiler-1/temperature', '21', { qos: 1 }, (error) => {
      if (!error) acknowledged = true;
    });
    await closing;
    expect(acknowledged).toBe(false);
    expect((await reader.execute('SELECT count(*) AS n FROM telemetry_data')).rows[0]?.['n']).toBe(1);
  });

  it('group-commits many concurrent sensors (throughput)', async () => {
    const sensorCount = 8;
    const perSensor = 2500;
    const clients = await Promise.all(Array.from({ length: sensorCount }, () => sensor()));
    const startedAtMs = Date.now();
    const started = performance.now();
    await Promise.all(
      clients.map((client, sensorIndex) =>
        Promise.all(
          Array.from({ length: perSensor }, (_, index) =>
            publishReading(client, `sensors/s${sensorIndex}/temperature`, { value: index, ts: startedAtMs - index }),
          ),
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const total = sensorCount * perSensor;
    const stats = writer.stats;
    console.info(
      `group commit: ${total} QoS 1 readings from ${sensorCount} sensors acknowledged in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} readings/s; ` +
        `${stats.commits} commits, largest ${stats.largestCommit}, mean ${(stats.committedRecords / stats.commits).toFixed(1)}`,
    );
    await expect.poll(async () => (await storedIds()).size, { timeout: 5000, interval: 25 }).toBe(total);
    expect(stats.commits).toBeLessThan(total / 5); // natural batching happened
  });
});
