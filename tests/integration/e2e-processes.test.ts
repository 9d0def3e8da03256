/**
 * The deployment shape: broker/main.ts, bridge/main.ts and edge/main.ts as separate processes,
 * configured only through their environment variables, mutual TLS between them, a sensor on the
 * edge's local listener, and a read-only observer watching the cluster traffic the way
 * mosquitto_sub or MQTT Explorer would.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readTlsFiles } from '../../common/tls-files.js';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { freePort } from '../../devtools/free-port.js';
import type { Database } from '../../bridge/db/connection.js';
import { startEmbeddedPostgres } from '../../devtools/embedded-postgres.js';
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
import { connectSimulatedSensors, SIMULATED_SENSOR_CONNECT_MS } from '../helpers/edge-sensor.js';
import { connectClient } from '../helpers/mqtt-client.js';
import { collectMessages } from '../helpers/mqtt-observe.js';
import { openTestDatabase } from '../helpers/postgres.js';
import { registerCleanup } from '../helpers/teardown.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = 'c0ffee00-1234-4abc-8def-0000000e2e99';
/** how long a reading may take through the processes into the database */
const poll = { timeout: 15_000, interval: 50 };
/** restart() waits this long at most for the restarted process to be healthy (waitHealthy's default) */
const RESTART_MS = 30_000;
/** readings published while the broker was down: re-sent after ack timeouts that double up to 16 × 2 s */
const catchUpPoll = { timeout: 60_000, interval: 200 };

let certificates: CertificateBundle;
let controlPlane: ControlPlaneProcesses;
let sensorPort: number;
let db: Database;

beforeAll(async () => {
  const workDir = tempDirectory('e2e-processes');
  certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE],
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
  });
  const postgres = await startEmbeddedPostgres({ port: await freePort() });
  registerCleanup(() => postgres.stop());
  controlPlane = await startControlPlaneProcesses({
    certificates,
    databaseUrl: postgres.connectionString,
    logDir: workDir,
  });
  registerCleanup(() => controlPlane.stop());
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
    { timeout: timeoutFor(SIMULATED_SENSOR_CONNECT_MS, 2 * RESTART_MS, 3 * poll.timeout, 20_000, catchUpPoll.timeout) },
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
      await expect.poll(acknowledged, poll).toBeGreaterThanOrEqual(100);
      await controlPlane.restart('bridge', 'SIGKILL'); // crashed mid-stream, unacknowledged messages stay with the broker
      await expect.poll(acknowledged, poll).toBeGreaterThanOrEqual(400);
      // the standalone broker keeps sessions in memory: this loses every queued message and session
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
