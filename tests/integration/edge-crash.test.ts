/**
 * The edge agent crashes (SIGKILL) while sensors publish fast, in the middle of a group commit,
 * and restarts on the same libSQL file; three times. Guarantee 1 of the README (a PUBACKed reading
 * is committed in libSQL) and guarantee 4 (re-sends are idempotent by reading id) end to end:
 * broker, bridge and edge are their own processes over mutual TLS, the database is PostgreSQL at
 * SERIALIZABLE.
 *
 * "In the middle of a group commit" is checked, not hoped for: before each kill the edge is frozen
 * (SIGSTOP) at a random moment until, frozen, it holds libSQL's write lock (a write transaction is
 * open: BEGIN IMMEDIATE from the test gets SQLITE_BUSY) while readings of a sensor without ids
 * wait for their PUBACK, and readings were arriving just before (edge_readings_accepted_total
 * rising). The frozen process is then killed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { closeDatabase, openDatabase, type Database } from '../../bridge/db/connection.js';
import { freePort } from '../../devtools/free-port.js';
import { standardSensors } from '../../devtools/sensor-simulator.js';
import { edgeSyncCounts, writeLockHeldElsewhere } from '../helpers/edge-db-probe.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { connectResendingSensor, type ResendingSensor } from '../helpers/resending-sensor.js';
import {
  scrapeMetric,
  startBridgeProcess,
  startBrokerProcess,
  startEdgeProcess,
  type EdgeProcessOptions,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = 'ed9ec7a5-0b1d-4e2f-9a3c-5d6e7f809a1b';
/** most unacknowledged readings per sensor */
const WINDOW = 16;
const KILLS = 3;
/** readings the edge must accept between two kills (and after the last restart) */
const READINGS_PER_ROUND = 400;

let workDir: string;
let certificates: CertificateBundle;
let postgres: TestPostgres;
let broker: RunningProcess;
let bridge: RunningProcess;
let edge: RunningProcess & { metricsUrl: string; sensorUrl: string };
let edgeOptions: EdgeProcessOptions;
let db: Database;
const idSensors: ResendingSensor[] = [];
const nameSensors: ResendingSensor[] = [];

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'edge-crash-'));
  certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE],
    serviceNames: ['bridge'],
  });
  postgres = await startTestPostgres();
  const brokerProcess = await startBrokerProcess({ certificates, logDir: workDir });
  broker = brokerProcess;
  bridge = await startBridgeProcess({
    certificates,
    databaseUrl: postgres.connectionString,
    brokerUrl: `mqtts://127.0.0.1:${brokerProcess.port}`,
    logDir: workDir,
  });
  edgeOptions = {
    certificates,
    deviceId: DEVICE,
    brokerUrl: `mqtts://localhost:${brokerProcess.port}`,
    dbPath: join(workDir, 'edge.db'),
    sensorPort: await freePort(),
    metricsPort: await freePort(),
    logDir: workDir,
    logLevel: 'info',
    env: { ACK_TIMEOUT_MS: '1500', SYNC_INTERVAL_MS: '500' },
  };
  edge = await startEdgeProcess(edgeOptions);
  db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'edge-crash', poolSize: 1 });
});

afterAll(async () => {
  await Promise.all([...idSensors, ...nameSensors].map((sensor) => sensor.close()));
  await edge?.close();
  await bridge?.close();
  await broker?.close();
  if (db) await closeDatabase(db);
  await postgres?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Freezes the edge at random moments until it is caught inside a write transaction while a
 * sensor without ids waits for a PUBACK; leaves it frozen and says how many tries it took.
 */
async function freezeInsideGroupCommit(): Promise<number> {
  for (let attempt = 1; attempt <= 300; attempt += 1) {
    await edge.freeze();
    const lockHeld = await writeLockHeldElsewhere(edgeOptions.dbPath);
    if (lockHeld && nameSensors.some((sensor) => sensor.unacknowledged() > 0)) return attempt;
    edge.thaw();
    await sleep(Math.random() * 20);
  }
  throw new Error('the edge was never caught inside a write transaction in 300 tries');
}

describe('edge agent killed mid-stream', () => {
  it('stores every reading a sensor got a PUBACK for exactly once when the edge is killed inside a group commit, three times', async () => {
    for (const [n, spec] of standardSensors(6).entries()) {
      const withIds = n % 2 === 0;
      const sensorId = `${withIds ? 'id' : 'ts'}-${spec.sensorId}`;
      const sensor = await connectResendingSensor(edge.sensorUrl, DEVICE, { ...spec, sensorId }, { withIds });
      (withIds ? idSensors : nameSensors).push(sensor);
    }
    const sensors = [...idSensors, ...nameSensors];
    const pump = setInterval(() => {
      for (const sensor of sensors) {
        while (sensor.unacknowledged() < WINDOW && sensor.publishNext());
      }
    }, 5);

    const kills: Array<{ acceptedBeforeFreeze: number; tries: number; lockHeld: boolean; waitingReadings: number }> =
      [];
    try {
      for (let round = 1; round <= KILLS; round += 1) {
        // the counter is per process: it starts at 0 after each restart
        const accepted = await waitFor(
          `${READINGS_PER_ROUND} readings accepted by the edge (round ${round})`,
          () => scrapeMetric(edge.metricsUrl, 'edge_readings_accepted_total'),
          (n) => n >= READINGS_PER_ROUND,
          { timeoutMs: 30_000, intervalMs: 50 },
        );
        const acceptedBeforeFreeze = await waitFor(
          'readings still arriving',
          () => scrapeMetric(edge.metricsUrl, 'edge_readings_accepted_total'),
          (n) => n > accepted,
          { timeoutMs: 10_000, intervalMs: 5 },
        );
        const tries = await freezeInsideGroupCommit();
        // still frozen: the state below is the state the kill interrupts
        kills.push({
          acceptedBeforeFreeze,
          tries,
          lockHeld: await writeLockHeldElsewhere(edgeOptions.dbPath),
          waitingReadings: nameSensors.reduce((sum, sensor) => sum + sensor.unacknowledged(), 0),
        });
        await edge.kill();
        edge = await startEdgeProcess(edgeOptions);
      }
      await waitFor(
        'readings accepted by the restarted edge',
        () => scrapeMetric(edge.metricsUrl, 'edge_readings_accepted_total'),
        (n) => n >= READINGS_PER_ROUND,
        { timeoutMs: 30_000, intervalMs: 50 },
      );
    } finally {
      clearInterval(pump);
    }

    expect(kills).toHaveLength(KILLS);
    for (const kill of kills) {
      expect(kill.lockHeld).toBe(true);
      expect(kill.waitingReadings).toBeGreaterThan(0);
    }
    await waitFor(
      'every reading acknowledged to its sensor (re-sent where needed)',
      () => sensors.every((sensor) => sensor.unacknowledged() === 0),
      Boolean,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    // the sensors without ids did re-send readings the edge had not acknowledged when it died
    expect(nameSensors.reduce((sum, sensor) => sum + sensor.resends(), 0)).toBeGreaterThan(0);

    const acknowledged = sensors.flatMap((sensor) => [...sensor.acknowledged]);
    expect(new Set(acknowledged).size).toBe(acknowledged.length);
    await waitFor(
      'every acknowledged reading in PostgreSQL',
      async () =>
        Number(
          (await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data WHERE device_id = $1', [DEVICE])).n,
        ),
      (rows) => rows >= acknowledged.length,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const rows = await db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
      DEVICE,
    ]);
    // each once, and nothing else (every reading sent was acknowledged in the end)
    expect(rows).toHaveLength(acknowledged.length);
    expect(new Set(rows.map((row) => row.id))).toEqual(new Set(acknowledged));
    // a re-sent reading without id never became a second row under another id
    const twice = await db.any<{ sensor_id: string }>(
      `SELECT sensor_id FROM telemetry_data WHERE device_id = $1 AND sensor_id LIKE 'ts-%'
       GROUP BY sensor_id, data_type, "timestamp" HAVING count(*) > 1`,
      [DEVICE],
    );
    expect(twice).toEqual([]);

    // and the edge got the acks: everything synced, nothing left over
    const counts = await waitFor(
      'every reading synced on the edge',
      () => edgeSyncCounts(edgeOptions.dbPath),
      (c) => c.synced >= acknowledged.length,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(counts).toEqual({ pending: 0, syncing: 0, synced: acknowledged.length, failed: 0 });
  }, 420_000);
});
