/**
 * End to end through every real component: mqtt.js sensors → edge agent (libSQL) → uplink over
 * mutual TLS 1.3 → Aedes with the device ACL → bridge → PostgreSQL at SERIALIZABLE → sync/ack.
 * The same launcher runs `npm run demo` and `npm run bench`.
 */
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../common/ids.js';
import { readTlsFiles } from '../../common/tls-files.js';
import { topics } from '../../schemas/topics.js';
import { startLocalSystem, type LocalDevice, type LocalSystem } from '../../devtools/local-system.js';
import { standardSensors, type SimulatedSensor } from '../../devtools/sensor-simulator.js';
import { connectSimulatedSensors, SIMULATED_SENSOR_CONNECT_MS } from '../helpers/edge-sensor.js';
import { testLogger } from '../helpers/logger.js';
import { CONNECT_TIMEOUT_MS, connectClient } from '../helpers/mqtt-client.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';
import { connectTelemetryDevice, type TelemetryDevice } from '../helpers/telemetry-device.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { timeoutFor } from '../helpers/wait.js';

const OUTAGE_DEVICE = 'a1b2c3d4-0001-4a00-8000-00000000e2e1';
const STEADY_DEVICE = 'a1b2c3d4-0002-4a00-8000-00000000e2e2';
/** speaks MQTT as a device directly (no edge agent): replays, stale versions, malformed batches */
const RAW_DEVICE = 'a1b2c3d4-0003-4a00-8000-00000000e2e3';
/** how long one step of the system (a reading through edge, broker and bridge into the database) may take */
const poll = { timeout: 15_000, interval: 25 };
/** in-flight batches back to pending: one ack timeout (2 s here) and the next sync tick */
const ackTimeoutPoll = { ...poll, timeout: 10_000 };
/** a device draining a backlog of 150 readings after its uplink came back */
const drainPoll = { ...poll, timeout: 30_000 };

let system: LocalSystem;

function device(deviceId: string): LocalDevice {
  const found = system.devices.find((candidate) => candidate.deviceId === deviceId);
  if (!found) throw new Error(`no device ${deviceId}`);
  return found;
}

async function storedIds(deviceId: string): Promise<string[]> {
  const rows = await system.db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
    deviceId,
  ]);
  return rows.map((row) => row.id);
}

const sensorsFor = (deviceId: string, count: number): Promise<SimulatedSensor[]> =>
  connectSimulatedSensors(device(deviceId).sensorUrl, standardSensors(count));

/** A plain mqtt.js sensor on a device's local listener. */
const rawSensor = (deviceId: string, name: string): Promise<MqttClient> =>
  connectClient(device(deviceId).sensorUrl, { clientId: `${name}-${newId().slice(0, 8)}` });

/** The certificate-only device's own MQTT connection over mutual TLS, collecting its sync acks. */
async function rawDevice(): Promise<TelemetryDevice> {
  const files = system.certificates.devices[RAW_DEVICE];
  if (!files) throw new Error('no raw device certificate');
  const tls = readTlsFiles({ caPath: system.certificates.ca.certPath, ...files });
  return connectTelemetryDevice(`mqtts://127.0.0.1:${system.broker.port}`, RAW_DEVICE, tls);
}

beforeAll(async () => {
  const workDir = tempDirectory('e2e-sync');
  system = await startLocalSystem({
    deviceIds: [OUTAGE_DEVICE, STEADY_DEVICE],
    certificateOnlyDeviceIds: [RAW_DEVICE],
    dataDir: join(workDir, 'data'),
    certDir: join(workDir, 'certs'),
    logger: testLogger('e2e-sync'),
    edge: { ackTimeoutMs: 2_000, syncIntervalMs: 1_000 },
  });
  registerCleanup(() => system.close());
});

describe('end to end over mutual TLS into PostgreSQL', () => {
  it(
    'stores every reading a sensor got a PUBACK for exactly once, across an uplink outage',
    { timeout: timeoutFor(SIMULATED_SENSOR_CONNECT_MS, 3 * poll.timeout, ackTimeoutPoll.timeout, drainPoll.timeout) },
    async () => {
      const outage = device(OUTAGE_DEVICE);
      const [[first, second, third], steadySensors] = await Promise.all([
        sensorsFor(OUTAGE_DEVICE, 3),
        sensorsFor(STEADY_DEVICE, 2),
      ]);
      const all = [first!, second!, third!];
      const publishRound = () => Promise.all([...all, ...steadySensors].map((sensor) => sensor.publishReading()));

      for (let round = 0; round < 20; round++) await publishRound();
      await expect.poll(() => storedIds(OUTAGE_DEVICE), poll).toHaveLength(60);

      outage.uplink.cut();
      for (let round = 0; round < 40; round++) await publishRound();
      // the agent kept accepting (every publish above got its PUBACK) and holds them locally
      const duringOutage = await outage.agent.stats();
      expect(duringOutage.connected).toBe(false);
      expect(duringOutage.pending + duringOutage.syncing).toBeGreaterThanOrEqual(100);
      expect((await storedIds(OUTAGE_DEVICE)).length).toBeLessThan(180);
      // a batch that was in flight when the link dropped goes back to pending once its ack times out
      await expect.poll(() => outage.agent.stats(), ackTimeoutPoll).toMatchObject({ syncing: 0 });
      // the other device is unaffected
      await expect.poll(() => storedIds(STEADY_DEVICE), poll).toHaveLength(120);

      outage.uplink.restore();
      for (let round = 0; round < 10; round++) await publishRound();
      await expect
        .poll(() => outage.agent.stats(), drainPoll)
        .toMatchObject({ pending: 0, syncing: 0, connected: true });

      const acknowledged = all.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id));
      expect(acknowledged).toHaveLength(210);
      const stored = await storedIds(OUTAGE_DEVICE);
      expect(stored).toHaveLength(210);
      expect(new Set(stored)).toEqual(new Set(acknowledged));
      expect((await outage.agent.stats()).synced).toBe(210);
      await expect.poll(() => storedIds(STEADY_DEVICE), poll).toHaveLength(140);
      expect(new Set(await storedIds(STEADY_DEVICE))).toEqual(
        new Set(steadySensors.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id))),
      );
    },
  );

  it('adds no rows for readings a sensor re-sends or for a batch delivered twice', async () => {
    const steady = device(STEADY_DEVICE);
    const before = (await storedIds(STEADY_DEVICE)).length;
    const sensor = await rawSensor(STEADY_DEVICE, 'resender');
    const readings = Array.from({ length: 25 }, (_, i) => ({ id: newId(), value: i, unit: 'C', ts: Date.now() - i }));
    for (const reading of readings)
      await sensor.publishAsync('sensors/resender/temperature', JSON.stringify(reading), { qos: 1 });
    // the same readings again, and once more without ids but with the same timestamps
    for (const reading of readings)
      await sensor.publishAsync('sensors/resender/temperature', JSON.stringify(reading), { qos: 1 });
    await expect.poll(() => steady.agent.stats(), poll).toMatchObject({ pending: 0, syncing: 0 });
    const stored = await storedIds(STEADY_DEVICE);
    expect(stored.length - before).toBe(25);

    const raw = await rawDevice();
    const batch = makeBatch(Array.from({ length: 40 }, (_, i) => makeRecord({ value: i })));
    await raw.send(batch);
    await raw.send(batch); // a redelivery
    await raw.send({ ...batch, batchId: newId() }); // the edge re-sending after an ack timeout
    await expect.poll(() => raw.acks, poll).toHaveLength(3);
    expect(raw.acks.map((ack) => ack.accepted)).toEqual([40, 40, 40]);
    expect(raw.acks.every((ack) => ack.rejected.length === 0 && ack.conflicts === 0)).toBe(true);
    expect(await storedIds(RAW_DEVICE)).toHaveLength(40);
  });

  it('never lets a stale version overwrite a newer one, and logs the conflict', async () => {
    const raw = await rawDevice();
    const newer = makeRecord({ value: 99, version: 3 });
    const stale = { ...newer, value: 1, version: 2 };
    await raw.send(makeBatch([newer]));
    await expect.poll(() => raw.acks, poll).toHaveLength(1);
    await raw.send(makeBatch([stale]));
    await expect.poll(() => raw.acks, poll).toHaveLength(2);

    expect(raw.acks[1]).toMatchObject({ accepted: 1, conflicts: 1, rejected: [] });
    const row = await system.db.one<{ value: number; version: string }>(
      'SELECT value, version FROM telemetry_data WHERE id = $1',
      [newer.id],
    );
    expect(row).toEqual({ value: 99, version: '3' }); // BIGINT arrives as a string
    const conflicts = await system.db.any<{ conflict_type: string; resolution_strategy: string }>(
      'SELECT conflict_type, resolution_strategy FROM conflict_log WHERE record_id = $1',
      [newer.id],
    );
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]?.resolution_strategy).toBe('last-write-wins');
  });

  it('carries a sensor correction (same id, new value) through as a newer version', async () => {
    const sensor = await rawSensor(STEADY_DEVICE, 'corrector');
    const id = newId();
    const ts = Date.now();
    await sensor.publishAsync('sensors/corrector/humidity', JSON.stringify({ id, value: 40, ts }), { qos: 1 });
    const stored = () =>
      system.db.oneOrNone<{ value: number; version: string }>(
        'SELECT value, version FROM telemetry_data WHERE id = $1',
        [id],
      );
    await expect.poll(stored, poll).toEqual({ value: 40, version: '1' }); // BIGINT arrives as a string
    await sensor.publishAsync('sensors/corrector/humidity', JSON.stringify({ id, value: 41.5, ts }), { qos: 1 });
    await expect.poll(stored, poll).toMatchObject({ version: '2' });
    expect((await stored())?.value).toBe(41.5);
  });

  it(
    'rejects malformed input with a clear error and keeps the readings behind it flowing',
    { timeout: timeoutFor(2 * CONNECT_TIMEOUT_MS, 3 * poll.timeout) },
    async () => {
      const sensor = await rawSensor(STEADY_DEVICE, 'mixed');
      const notices: string[] = [];
      sensor.on('message', (_topic, payload) => notices.push(JSON.parse(payload.toString()).error as string));
      await sensor.subscribeAsync('sensors/+/+/error', { qos: 1 });

      const goodBefore = newId();
      const goodAfter = newId();
      await sensor.publishAsync('sensors/mixed/temperature', JSON.stringify({ id: goodBefore, value: 1 }), { qos: 1 });
      await sensor.publishAsync('sensors/mixed/temperature', '{"value": 1,', { qos: 1 });
      await sensor.publishAsync('sensors/mixed/temperature', JSON.stringify({ value: 'warm' }), { qos: 1 });
      await sensor.publishAsync('sensors/mixed/temperature', JSON.stringify({ id: goodAfter, value: 2 }), { qos: 1 });
      await expect.poll(() => notices, poll).toHaveLength(2);
      expect(notices[0]).toMatch(/not valid JSON/);
      expect(notices[1]).toMatch(/\/value must be number/);
      await expect.poll(() => storedIds(STEADY_DEVICE), poll).toEqual(expect.arrayContaining([goodBefore, goodAfter]));

      // and a malformed batch at the bridge: an error ack, then the next batch is stored
      const raw = await rawDevice();
      await raw.send('{"batchId": "x", "records": [');
      const valid = makeRecord();
      await raw.send(makeBatch([valid, { ...makeRecord(), value: 'NaN' }]));
      await expect.poll(() => raw.acks, poll).toHaveLength(2);
      expect(raw.acks[0]).toMatchObject({ batchId: null, accepted: 0 });
      expect(raw.acks[0]?.error).toMatch(/JSON/);
      expect(raw.acks[1]).toMatchObject({ accepted: 1, conflicts: 0 });
      expect(raw.acks[1]?.rejected).toHaveLength(1);
      expect(raw.acks[1]?.rejected[0]?.reason).toMatch(/value/);
      expect(await storedIds(RAW_DEVICE)).toContain(valid.id);
    },
  );

  it("lets an observer order status messages: a will carries its connection's `at`, a reconnect a later one", async () => {
    const outage = device(OUTAGE_DEVICE);
    const files = system.certificates.observers['explorer'];
    if (!files) throw new Error('no observer certificate');
    const observer = await connectClient(`mqtts://127.0.0.1:${system.broker.port}`, {
      clientId: 'explorer',
      ...readTlsFiles({ caPath: system.certificates.ca.certPath, ...files }),
    });
    const statuses: Array<{ online: boolean; at: string }> = [];
    observer.on('message', (_topic, payload) =>
      statuses.push(JSON.parse(payload.toString()) as { online: boolean; at: string }),
    );
    await observer.subscribeAsync(topics.status(OUTAGE_DEVICE), { qos: 1 });
    await expect.poll(() => statuses, poll).toHaveLength(1);
    const online = statuses[0]!;
    expect(online.online).toBe(true);

    outage.uplink.cut(); // the broker sees the connection die and publishes the will
    await expect.poll(() => statuses, poll).toHaveLength(2);
    expect(statuses[1]).toEqual({ online: false, at: online.at }); // same connection: offline wins the tie

    outage.uplink.restore();
    await expect.poll(() => statuses, poll).toHaveLength(3);
    expect(statuses[2]?.online).toBe(true);
    expect(Date.parse(statuses[2]!.at)).toBeGreaterThan(Date.parse(online.at)); // a newer connection wins
  });
});
