/**
 * The deployment shape: broker/main.ts, bridge/main.ts and edge/main.ts as separate processes,
 * configured only through their environment variables, mutual TLS between them, a sensor on the
 * edge's local listener, and a read-only observer watching the cluster traffic the way
 * mosquitto_sub or MQTT Explorer would.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readTlsFiles } from '../../common/tls-files.js';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { freePort } from '../../devtools/free-port.js';
import type { Database } from '../../bridge/db/connection.js';
import { startEmbeddedPostgres, type RunningEmbeddedPostgres } from '../../devtools/embedded-postgres.js';
import {
  spawnEntryPoint,
  startControlPlaneProcesses,
  stopProcess,
  waitHealthy,
  type ControlPlaneProcesses,
} from '../../devtools/control-plane-processes.js';
import type { TelemetryBatch } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { standardSensors } from '../../devtools/sensor-simulator.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { edgeSyncCounts } from '../helpers/edge-db-probe.js';
import { connectSimulatedSensors, SIMULATED_SENSOR_CONNECT_MS } from '../helpers/edge-sensor.js';
import { connectClient } from '../helpers/mqtt-client.js';
import { collectMessages } from '../helpers/mqtt-observe.js';
import { openTestDatabase } from '../helpers/postgres.js';
import {
  FREEZE_MS,
  freezeProcess,
  PROCESS_START_MS,
  scrapeMetric,
  startBridgeProcess,
  startBrokerProcess,
  startEdgeProcess,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { registerCleanup } from '../helpers/teardown.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = 'c0ffee00-1234-4abc-8def-0000000e2e99';
/** the device of the kill-between-COMMIT-and-PUBACK test, on a control plane of its own */
const SECOND_DEVICE = 'c0ffee00-1234-4abc-8def-0000000e2e98';
/** how long a reading may take through the processes into the database */
const poll = { timeout: 15_000, interval: 50 };
/** restart() waits this long at most for the restarted process to be healthy (waitHealthy's default) */
const RESTART_MS = 30_000;
/** readings published while the broker was down: re-sent after ack timeouts that double up to 16 × 2 s */
const catchUpPoll = { timeout: 60_000, interval: 200 };

let workDir: string;
let certificates: CertificateBundle;
let postgres: RunningEmbeddedPostgres;
let controlPlane: ControlPlaneProcesses;
let sensorPort: number;
let db: Database;

beforeAll(async () => {
  workDir = tempDirectory('e2e-processes');
  certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE, SECOND_DEVICE],
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
  });
  postgres = await startEmbeddedPostgres({ port: await freePort() });
  registerCleanup(() => postgres.close());
  controlPlane = await startControlPlaneProcesses({
    certificates,
    databaseUrl: postgres.connectionString,
    logDir: workDir,
  });
  registerCleanup(() => controlPlane.close());
  const device = certificates.devices[DEVICE]!;
  sensorPort = await freePort();
  const edgeMetricsPort = await freePort();
  const edge = spawnEntryPoint(
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
  registerCleanup(() => stopProcess(edge));
  await waitHealthy(edge, `http://127.0.0.1:${edgeMetricsPort}/metrics`);
  db = await openTestDatabase(postgres, 'e2e-processes', { poolSize: 1 });
});

describe('separate processes configured by environment', () => {
  it('carries sensor readings into the database, visible as readable JSON to an observer', async () => {
    const observer = await connectClient(`mqtts://localhost:${controlPlane.brokerPort}`, {
      clientId: 'explorer',
      ...readTlsFiles({ caPath: certificates.ca.certPath, ...certificates.observers['explorer']! }),
    });
    const seen = collectMessages(observer);
    await observer.subscribeAsync('devices/#', { qos: 1 });

    const sensor = await connectClient(`mqtt://127.0.0.1:${sensorPort}`, { clientId: 'boiler-sensor' });
    await sensor.publishAsync('sensors/boiler-1/temperature', JSON.stringify({ value: 71.5, unit: 'C' }), { qos: 1 });
    await sensor.publishAsync('sensors/boiler-1/pressure', '1.8', { qos: 1 });

    const rows = () =>
      db.any<{ data_type: string; value: number; unit: string | null }>(
        'SELECT data_type, value, unit FROM telemetry_data WHERE device_id = $1 ORDER BY data_type',
        [DEVICE],
      );
    await expect.poll(rows, { ...poll, timeout: 20_000 }).toHaveLength(2);
    expect(await rows()).toEqual([
      { data_type: 'pressure', value: 1.8, unit: null },
      { data_type: 'temperature', value: 71.5, unit: 'C' },
    ]);

    await expect.poll(() => seen.map((m) => m.topic), poll).toContain(topics.syncAck(DEVICE));
    const telemetry = seen.filter((message) => message.topic === topics.telemetry(DEVICE));
    const records = telemetry.flatMap((message) => (JSON.parse(message.payload) as TelemetryBatch).records);
    expect(records.map((record) => record.value).sort()).toEqual([1.8, 71.5]);
    const status = seen.find((message) => message.topic === topics.status(DEVICE));
    expect(JSON.parse(status?.payload ?? '{}')).toMatchObject({ online: true });
  });

  it(
    'loses no acknowledged reading when the bridge and then the broker are killed mid-stream',
    {
      timeout: timeoutFor(
        SIMULATED_SENSOR_CONNECT_MS,
        2 * RESTART_MS,
        2 * FREEZE_MS,
        6 * poll.timeout,
        20_000,
        catchUpPoll.timeout,
      ),
    },
    async () => {
      const sensors = await connectSimulatedSensors(
        `mqtt://127.0.0.1:${sensorPort}`,
        standardSensors(4).map((spec) => ({ ...spec, sensorId: `crash-${spec.sensorId}` })),
      );
      const before = Number((await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
      const timers = sensors.map((sensor) =>
        setInterval(() => {
          if (sensor.inFlight() < 20) void sensor.publishReading();
        }, 20),
      );
      const stopPublishing = registerCleanup(() => timers.forEach(clearInterval));
      const acknowledged = () => sensors.reduce((sum, sensor) => sum + sensor.acknowledged.length, 0);
      const edgeDb = join(workDir, 'edge.db');
      const syncing = async () => (await edgeSyncCounts(edgeDb)).syncing;
      await expect.poll(acknowledged, poll).toBeGreaterThanOrEqual(100);
      // something is in flight when the bridge dies: the bridge holds telemetry it has not
      // acknowledged, and once it is frozen the edge has a batch out that nobody can acknowledge
      await expect
        .poll(
          () => scrapeMetric(`http://127.0.0.1:${controlPlane.bridgeHttpPort}/metrics`, 'bridge_messages_in_flight'),
          { ...poll, interval: 5, message: 'telemetry in flight at the bridge' },
        )
        .toBeGreaterThan(0);
      await freezeProcess(controlPlane.pid('bridge'), 'bridge');
      await expect
        .poll(syncing, { ...poll, message: 'an unacknowledged batch of the edge, the bridge frozen' })
        .toBeGreaterThan(0);
      await controlPlane.restart('bridge', 'SIGKILL'); // crashed mid-stream, unacknowledged messages stay with the broker
      await expect.poll(acknowledged, poll).toBeGreaterThanOrEqual(400);
      // the standalone broker keeps sessions in memory: this loses every queued message and session
      await freezeProcess(controlPlane.pid('broker'), 'broker');
      await expect
        .poll(syncing, { ...poll, message: 'an unacknowledged batch of the edge, the broker frozen' })
        .toBeGreaterThan(0);
      await controlPlane.restart('broker', 'SIGKILL');
      await expect.poll(acknowledged, { ...poll, timeout: 20_000 }).toBeGreaterThanOrEqual(700);
      await stopPublishing();
      await expect.poll(() => sensors.map((sensor) => sensor.inFlight()), poll).toEqual(sensors.map(() => 0));
      const acknowledgedIds = sensors.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id));

      const crashRows = () =>
        db.any<{ id: string }>("SELECT id::text AS id FROM telemetry_data WHERE sensor_id LIKE 'crash-%'");
      await expect
        .poll(async () => (await crashRows()).length, catchUpPoll)
        .toBeGreaterThanOrEqual(acknowledgedIds.length);
      const stored = await crashRows();
      expect(stored).toHaveLength(acknowledgedIds.length);
      expect(new Set(stored.map((row) => row.id))).toEqual(new Set(acknowledgedIds));
      const after = Number((await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
      expect(after - before).toBe(acknowledgedIds.length);
    },
  );
});

/**
 * A control plane of its own, with a TCP relay between the bridge and the broker: holding the
 * relay's bridge→broker direction lets the bridge go on receiving and committing while nothing it
 * sends (its sync/ack publishes, its PUBACKs) reaches the broker. A batch committed after the hold
 * is therefore provably committed and not acknowledged when the bridge is killed.
 */
describe('a bridge process killed between COMMIT and PUBACK', () => {
  /** a commit of the first bridge after the hold, seen through its metrics */
  const commitPoll = { timeout: 10_000, interval: 25 };
  /** every acknowledged reading stored, and synced on the edge */
  const settlePoll = { timeout: 30_000, interval: 200 };

  let broker: RunningProcess & { port: number };
  let relay: TcpProxy;
  let firstBridge: RunningProcess & { metricsUrl: string };
  let secondEdge: RunningProcess & { sensorUrl: string };
  let logDir: string;
  let secondEdgeDb: string;

  beforeAll(async () => {
    logDir = join(workDir, 'commit-puback');
    mkdirSync(logDir);
    broker = await startBrokerProcess({ certificates, logDir });
    relay = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
    registerCleanup(() => relay.close());
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

  it(
    'stores every reading once and gets the edge its acks when a second bridge process takes over',
    {
      timeout: timeoutFor(
        SIMULATED_SENSOR_CONNECT_MS,
        PROCESS_START_MS,
        3 * poll.timeout,
        commitPoll.timeout,
        2 * settlePoll.timeout,
      ),
    },
    async () => {
      const sensors = await connectSimulatedSensors(
        secondEdge.sensorUrl,
        standardSensors(4).map((spec) => ({ ...spec, sensorId: `commit-${spec.sensorId}` })),
      );
      const pump = setInterval(() => {
        for (const sensor of sensors) if (sensor.inFlight() < 20) void sensor.publishReading();
      }, 20);
      const stopPublishing = registerCleanup(() => clearInterval(pump));
      const ingested = (bridge: { metricsUrl: string }) =>
        scrapeMetric(bridge.metricsUrl, 'bridge_telemetry_records_ingested_total');

      await expect
        .poll(() => ingested(firstBridge), { ...poll, message: 'readings committed by the first bridge' })
        .toBeGreaterThanOrEqual(100);
      relay.hold('toTarget');
      const committedAtHold = await ingested(firstBridge);
      let atKill = { committed: committedAtHold, inFlight: 0 };
      await expect
        .poll(
          async () => {
            atKill = {
              committed: await ingested(firstBridge),
              inFlight: await scrapeMetric(firstBridge.metricsUrl, 'bridge_messages_in_flight'),
            };
            return atKill;
          },
          { ...commitPoll, message: 'a commit after the hold, with deliveries not acknowledged' },
        )
        .toSatisfy((state: typeof atKill) => state.committed > committedAtHold && state.inFlight > 0);
      // the sync/acks of that commit, and every PUBACK after them, are stuck in the relay
      expect(relay.heldBytes('toTarget')).toBeGreaterThan(0);
      expect(atKill.inFlight).toBeGreaterThan(0);
      await firstBridge.kill();

      const secondBridge = await startBridgeProcess({
        certificates,
        databaseUrl: postgres.connectionString,
        brokerUrl: `mqtts://localhost:${broker.port}`,
        logDir,
        name: 'second-bridge',
      });
      await expect
        .poll(() => ingested(secondBridge), { ...poll, message: 'readings committed by the second bridge' })
        .toBeGreaterThanOrEqual(100);
      await stopPublishing();
      await expect.poll(() => sensors.map((sensor) => sensor.inFlight()), poll).toEqual(sensors.map(() => 0));
      const acknowledgedIds = sensors.flatMap((sensor) => sensor.acknowledged.map((reading) => reading.id));

      const countRows = async () =>
        Number(
          (
            await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data WHERE device_id = $1', [
              SECOND_DEVICE,
            ])
          ).n,
        );
      await expect
        .poll(countRows, { ...settlePoll, message: 'every acknowledged reading in the database' })
        .toBeGreaterThanOrEqual(acknowledgedIds.length);
      const stored = await db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
        SECOND_DEVICE,
      ]);
      expect(stored).toHaveLength(acknowledgedIds.length);
      expect(new Set(stored.map((row) => row.id))).toEqual(new Set(acknowledgedIds));

      // the acks the first bridge could not deliver came from the second one: everything synced
      await expect
        .poll(async () => (await edgeSyncCounts(secondEdgeDb)).synced, {
          ...settlePoll,
          interval: 100,
          message: 'every reading synced on the edge',
        })
        .toBeGreaterThanOrEqual(acknowledgedIds.length);
      expect(await edgeSyncCounts(secondEdgeDb)).toEqual({
        pending: 0,
        syncing: 0,
        synced: acknowledgedIds.length,
        failed: 0,
      });
    },
  );
});
