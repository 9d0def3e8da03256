/**
 * The deployment shape: broker/main.ts, bridge/main.ts and edge/main.ts as separate processes,
 * configured only through their environment variables, mutual TLS between them, a sensor on the
 * edge's local listener, and a read-only observer watching the cluster traffic the way
 * mosquitto_sub or MQTT Explorer would.
 */
import { readTlsFiles } from '../../common/tls-files.js';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { freePort } from '../../devtools/free-port.js';
import { closeDatabase, openDatabase, type Database } from '../../bridge/db/connection.js';
import { startEmbeddedPostgres, type RunningEmbeddedPostgres } from '../../devtools/embedded-postgres.js';
import {
  spawnEntryPoint,
  startControlPlaneProcesses,
  stopProcess,
  waitHealthy,
  type ControlPlaneProcesses,
  type Spawned,
} from '../../devtools/control-plane-processes.js';
import type { TelemetryBatch } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { connectSensor, standardSensors, type SimulatedSensor } from '../../devtools/sensor-simulator.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { edgeSyncCounts } from '../helpers/edge-db-probe.js';
import { collectMessages } from '../helpers/mqtt-observe.js';
import {
  freezeProcess,
  scrapeMetric,
  startBridgeProcess,
  startBrokerProcess,
  startEdgeProcess,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = 'c0ffee00-1234-4abc-8def-0000000e2e99';
/** the device of the kill-between-COMMIT-and-PUBACK test, on a control plane of its own */
const SECOND_DEVICE = 'c0ffee00-1234-4abc-8def-0000000e2e98';

let workDir: string;
let certificates: CertificateBundle;
let postgres: RunningEmbeddedPostgres;
let controlPlane: ControlPlaneProcesses;
let edge: Spawned;
let sensorPort: number;
let db: Database;
const clients: MqttClient[] = [];

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'e2e-processes-'));
  certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE, SECOND_DEVICE],
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
  });
  postgres = await startEmbeddedPostgres({ port: await freePort() });
  controlPlane = await startControlPlaneProcesses({
    certificates,
    databaseUrl: postgres.connectionString,
    logDir: workDir,
  });
  const device = certificates.devices[DEVICE]!;
  sensorPort = await freePort();
  const edgeMetricsPort = await freePort();
  edge = spawnEntryPoint(
    'edge',
    'edge/main.ts',
    {
      LOG_LEVEL: 'warn',
      DEVICE_ID: DEVICE,
      EDGE_DB_URL: `file:${join(workDir, 'edge.db')}`,
      SENSOR_HOST: '127.0.0.1',
      SENSOR_PORT: String(sensorPort),
      BROKER_URL: `mqtts://localhost:${controlPlane.brokerPort}`,
      TLS_CA: certificates.ca.certPath,
      TLS_CERT: device.certPath,
      TLS_KEY: device.keyPath,
      METRICS_PORT: String(edgeMetricsPort),
      ACK_TIMEOUT_MS: '2000',
      SYNC_INTERVAL_MS: '1000',
    },
    workDir,
  );
  await waitHealthy(edge, `http://127.0.0.1:${edgeMetricsPort}/metrics`);
  db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'e2e-processes', poolSize: 1 });
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.endAsync(true)));
  if (edge) await stopProcess(edge);
  await controlPlane?.close();
  if (db) await closeDatabase(db);
  await postgres?.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe('separate processes configured by environment', () => {
  it('carries sensor readings into the database, visible as readable JSON to an observer', async () => {
    const observer = await mqtt.connectAsync(`mqtts://localhost:${controlPlane.brokerPort}`, {
      clientId: 'explorer',
      ...readTlsFiles({ caPath: certificates.ca.certPath, ...certificates.observers['explorer']! }),
      reconnectPeriod: 0,
    });
    clients.push(observer);
    const seen = collectMessages(observer);
    await observer.subscribeAsync('devices/#', { qos: 1 });

    const sensor = await mqtt.connectAsync(`mqtt://127.0.0.1:${sensorPort}`, { clientId: 'boiler-sensor' });
    clients.push(sensor);
    await sensor.publishAsync('sensors/boiler-1/temperature', JSON.stringify({ value: 71.5, unit: 'C' }), { qos: 1 });
    await sensor.publishAsync('sensors/boiler-1/pressure', '1.8', { qos: 1 });

    const rows = await waitFor(
      'both readings in the database',
      () =>
        db.any<{ data_type: string; value: number; unit: string | null }>(
          'SELECT data_type, value, unit FROM telemetry_data WHERE device_id = $1 ORDER BY data_type',
          [DEVICE],
        ),
      (found) => found.length === 2,
      { timeoutMs: 20_000 },
    );
    expect(rows).toEqual([
      { data_type: 'pressure', value: 1.8, unit: null },
      { data_type: 'temperature', value: 71.5, unit: 'C' },
    ]);

    await waitFor(
      'the sync/ack at the observer',
      () => seen.filter((m) => m.topic === topics.syncAck(DEVICE)).length,
      (n) => n >= 1,
    );
    const telemetry = seen.filter((message) => message.topic === topics.telemetry(DEVICE));
    const records = telemetry.flatMap((message) => (JSON.parse(message.payload) as TelemetryBatch).records);
    expect(records.map((record) => record.value).sort()).toEqual([1.8, 71.5]);
    const status = seen.find((message) => message.topic === topics.status(DEVICE));
    expect(JSON.parse(status?.payload ?? '{}')).toMatchObject({ online: true });
  });

  it('loses no acknowledged reading when the bridge and then the broker are killed mid-stream', async () => {
    const sensors: SimulatedSensor[] = await Promise.all(
      standardSensors(4).map((spec) =>
        connectSensor(`mqtt://127.0.0.1:${sensorPort}`, { ...spec, sensorId: `crash-${spec.sensorId}` }),
      ),
    );
    const before = Number((await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
    const timers = sensors.map((sensor) =>
      setInterval(() => {
        if (sensor.inFlight() < 20) void sensor.publishReading();
      }, 20),
    );
    const acknowledged = () => sensors.reduce((sum, sensor) => sum + sensor.acknowledged.length, 0);
    const edgeDb = join(workDir, 'edge.db');
    try {
      await waitFor('readings flowing', acknowledged, (n) => n >= 100);
      // something is in flight when the bridge dies: the bridge holds telemetry it has not
      // acknowledged, and once it is frozen the edge has a batch out that nobody can acknowledge
      await waitFor(
        'telemetry in flight at the bridge',
        () => scrapeMetric(`http://127.0.0.1:${controlPlane.bridgeHttpPort}/metrics`, 'bridge_messages_in_flight'),
        (n) => n > 0,
        { intervalMs: 5 },
      );
      await freezeProcess(controlPlane.pid('bridge'), 'bridge');
      await waitFor(
        'an unacknowledged batch of the edge, the bridge frozen',
        () => edgeSyncCounts(edgeDb),
        (counts) => counts.syncing > 0,
      );
      await controlPlane.restart('bridge', 'SIGKILL'); // crashed mid-stream, unacknowledged messages stay with the broker
      await waitFor('more readings', acknowledged, (n) => n >= 400);
      // the standalone broker keeps sessions in memory: this loses every queued message and session
      await freezeProcess(controlPlane.pid('broker'), 'broker');
      await waitFor(
        'an unacknowledged batch of the edge, the broker frozen',
        () => edgeSyncCounts(edgeDb),
        (counts) => counts.syncing > 0,
      );
      await controlPlane.restart('broker', 'SIGKILL');
      await waitFor('more readings after the broker restart', acknowledged, (n) => n >= 700, { timeoutMs: 20_000 });
    } finally {
      timers.forEach(clearInterval);
    }
    await waitFor('sensors to finish', () => sensors.every((sensor) => sensor.inFlight() === 0), Boolean);
    const acknowledgedIds = sensors.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id));

    const stored = await waitFor(
      'every acknowledged reading in the database',
      () => db.any<{ id: string }>("SELECT id::text AS id FROM telemetry_data WHERE sensor_id LIKE 'crash-%'"),
      (rows) => rows.length >= acknowledgedIds.length,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(stored).toHaveLength(acknowledgedIds.length);
    expect(new Set(stored.map((row) => row.id))).toEqual(new Set(acknowledgedIds));
    const after = Number((await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
    expect(after - before).toBe(acknowledgedIds.length);
    await Promise.all(sensors.map((sensor) => sensor.close()));
  });
});

/**
 * A control plane of its own, with a TCP relay between the bridge and the broker: holding the
 * relay's bridge→broker direction lets the bridge go on receiving and committing while nothing it
 * sends (its sync/ack publishes, its PUBACKs) reaches the broker. A batch committed after the hold
 * is therefore provably committed and not acknowledged when the bridge is killed.
 */
describe('a bridge process killed between COMMIT and PUBACK', () => {
  let broker: RunningProcess & { port: number };
  let relay: TcpProxy;
  let firstBridge: RunningProcess & { metricsUrl: string };
  let secondBridge: (RunningProcess & { metricsUrl: string }) | undefined;
  let secondEdge: RunningProcess & { sensorUrl: string };
  let secondEdgeDb: string;
  const sensors: SimulatedSensor[] = [];

  beforeAll(async () => {
    const logDir = join(workDir, 'commit-puback');
    mkdirSync(logDir);
    broker = await startBrokerProcess({ certificates, logDir });
    relay = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
    firstBridge = await startBridgeProcess({
      certificates,
      databaseUrl: postgres.connectionString,
      brokerUrl: `mqtts://localhost:${relay.port}`,
      logDir,
      name: 'first-bridge',
    });
    secondEdgeDb = join(logDir, 'edge.db');
    secondEdge = await startEdgeProcess({
      certificates,
      deviceId: SECOND_DEVICE,
      brokerUrl: `mqtts://localhost:${broker.port}`,
      dbPath: secondEdgeDb,
      sensorPort: await freePort(),
      metricsPort: await freePort(),
      logDir,
      env: { ACK_TIMEOUT_MS: '2000', SYNC_INTERVAL_MS: '1000' },
    });
  });

  afterAll(async () => {
    await Promise.all(sensors.map((sensor) => sensor.close()));
    await secondEdge?.close();
    await secondBridge?.close();
    await firstBridge?.close();
    await relay?.close();
    await broker?.close();
  });

  it('stores every reading once and gets the edge its acks when a second bridge process takes over', async () => {
    sensors.push(
      ...(await Promise.all(
        standardSensors(4).map((spec) =>
          connectSensor(secondEdge.sensorUrl, { ...spec, sensorId: `commit-${spec.sensorId}` }),
        ),
      )),
    );
    const pump = setInterval(() => {
      for (const sensor of sensors) if (sensor.inFlight() < 20) void sensor.publishReading();
    }, 20);
    const ingested = (bridge: { metricsUrl: string }) =>
      scrapeMetric(bridge.metricsUrl, 'bridge_telemetry_records_ingested_total');
    try {
      await waitFor(
        'readings committed by the first bridge',
        () => ingested(firstBridge),
        (n) => n >= 100,
      );
      relay.hold('toTarget');
      const committedAtHold = await ingested(firstBridge);
      const atKill = await waitFor(
        'a commit after the hold, with deliveries not acknowledged',
        async () => ({
          committed: await ingested(firstBridge),
          inFlight: await scrapeMetric(firstBridge.metricsUrl, 'bridge_messages_in_flight'),
        }),
        (state) => state.committed > committedAtHold && state.inFlight > 0,
        { timeoutMs: 10_000 },
      );
      // the sync/acks of that commit, and every PUBACK after them, are stuck in the relay
      expect(relay.heldBytes('toTarget')).toBeGreaterThan(0);
      expect(atKill.inFlight).toBeGreaterThan(0);
      await firstBridge.kill();

      secondBridge = await startBridgeProcess({
        certificates,
        databaseUrl: postgres.connectionString,
        brokerUrl: `mqtts://localhost:${broker.port}`,
        logDir: join(workDir, 'commit-puback'),
        name: 'second-bridge',
      });
      const second = secondBridge;
      await waitFor(
        'readings committed by the second bridge',
        () => ingested(second),
        (n) => n >= 100,
      );
    } finally {
      clearInterval(pump);
    }
    await waitFor('sensors to finish', () => sensors.every((sensor) => sensor.inFlight() === 0), Boolean);
    const acknowledgedIds = sensors.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id));

    const countRows = async () =>
      Number(
        (await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data WHERE device_id = $1', [SECOND_DEVICE]))
          .n,
      );
    await waitFor('every acknowledged reading in the database', countRows, (n) => n >= acknowledgedIds.length, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    const stored = await db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
      SECOND_DEVICE,
    ]);
    expect(stored).toHaveLength(acknowledgedIds.length);
    expect(new Set(stored.map((row) => row.id))).toEqual(new Set(acknowledgedIds));

    // the acks the first bridge could not deliver came from the second one: everything synced
    const counts = await waitFor(
      'every reading synced on the edge',
      () => edgeSyncCounts(secondEdgeDb),
      (c) => c.synced >= acknowledgedIds.length,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(counts).toEqual({ pending: 0, syncing: 0, synced: acknowledgedIds.length, failed: 0 });
  }, 180_000);
});
