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
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates } from '../../certs/dev-bundle.js';
import type { Database } from '../../bridge/db/connection.js';
import { freePort } from '../../devtools/free-port.js';
import { standardSensors } from '../../devtools/sensor-simulator.js';
import { edgeSyncCounts, writeLockHeldElsewhere } from '../helpers/edge-db-probe.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { connectResendingSensor, type ResendingSensor } from '../helpers/resending-sensor.js';
import {
  PROCESS_START_MS,
  scrapeMetric,
  startBridgeProcess,
  startBrokerProcess,
  startEdgeProcess,
  type EdgeProcessOptions,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { registerCleanup } from '../helpers/teardown.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = 'ed9ec7a5-0b1d-4e2f-9a3c-5d6e7f809a1b';
/** most unacknowledged readings per sensor */
const WINDOW = 16;
const KILLS = 3;
/** readings the edge must accept between two kills (and after the last restart) */
const READINGS_PER_ROUND = 400;
/** READINGS_PER_ROUND readings accepted by a (restarted) edge */
const roundPoll = { timeout: 30_000, interval: 50 };
/** readings still arriving, seen on the edge's counter */
const arrivingPoll = { timeout: 10_000, interval: 5 };
/** the freeze search: at most 300 tries of a few milliseconds each, more on a loaded machine */
const FREEZE_SEARCH_MS = 30_000;
/** the re-sends after the last restart acknowledged, and the backlog synced */
const settlePoll = { timeout: 30_000, interval: 50 };
/** every acknowledged reading in PostgreSQL */
const storedPoll = { timeout: 60_000, interval: 250 };

let edge: RunningProcess & { metricsUrl: string; sensorUrl: string };
let edgeOptions: EdgeProcessOptions;
let db: Database;
const idSensors: ResendingSensor[] = [];
const nameSensors: ResendingSensor[] = [];

beforeAll(async () => {
  const workDir = tempDirectory('edge-crash');
  const certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE],
    serviceNames: ['bridge'],
  });
  const postgres = await startTestPostgres();
  const brokerProcess = await startBrokerProcess({ certificates, logDir: workDir });
  await startBridgeProcess({
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
  db = await openTestDatabase(postgres, 'edge-crash', { poolSize: 1 });
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
  it(
    'stores every reading a sensor got a PUBACK for exactly once when the edge is killed inside a group commit, three times',
    {
      timeout: timeoutFor(
        KILLS * (roundPoll.timeout + arrivingPoll.timeout + FREEZE_SEARCH_MS + PROCESS_START_MS),
        roundPoll.timeout,
        2 * settlePoll.timeout,
        storedPoll.timeout,
      ),
    },
    async () => {
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
      const stopPublishing = registerCleanup(() => clearInterval(pump));
      const acceptedReadings = () => scrapeMetric(edge.metricsUrl, 'edge_readings_accepted_total');

      const kills: Array<{ acceptedBeforeFreeze: number; tries: number; lockHeld: boolean; waitingReadings: number }> =
        [];
      for (let round = 1; round <= KILLS; round += 1) {
        // the counter is per process: it starts at 0 after each restart
        await expect
          .poll(acceptedReadings, {
            ...roundPoll,
            message: `${READINGS_PER_ROUND} readings accepted by the edge (round ${round})`,
          })
          .toBeGreaterThanOrEqual(READINGS_PER_ROUND);
        const accepted = await acceptedReadings();
        let acceptedBeforeFreeze = accepted;
        await expect
          .poll(
            async () => {
              acceptedBeforeFreeze = await acceptedReadings();
              return acceptedBeforeFreeze;
            },
            { ...arrivingPoll, message: 'readings still arriving' },
          )
          .toBeGreaterThan(accepted);
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
      await expect
        .poll(acceptedReadings, { ...roundPoll, message: 'readings accepted by the restarted edge' })
        .toBeGreaterThanOrEqual(READINGS_PER_ROUND);
      await stopPublishing();

      expect(kills).toHaveLength(KILLS);
      for (const kill of kills) {
        expect(kill.lockHeld).toBe(true);
        expect(kill.waitingReadings).toBeGreaterThan(0);
      }
      await expect
        .poll(() => sensors.map((sensor) => sensor.unacknowledged()), {
          ...settlePoll,
          message: 'every reading acknowledged to its sensor (re-sent where needed)',
        })
        .toEqual(sensors.map(() => 0));
      // the sensors without ids did re-send readings the edge had not acknowledged when it died
      expect(nameSensors.reduce((sum, sensor) => sum + sensor.resends(), 0)).toBeGreaterThan(0);

      const acknowledged = sensors.flatMap((sensor) => [...sensor.acknowledged]);
      expect(new Set(acknowledged).size).toBe(acknowledged.length);
      await expect
        .poll(
          async () =>
            Number(
              (await db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data WHERE device_id = $1', [DEVICE]))
                .n,
            ),
          { ...storedPoll, message: 'every acknowledged reading in PostgreSQL' },
        )
        .toBeGreaterThanOrEqual(acknowledged.length);
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
      await expect
        .poll(async () => (await edgeSyncCounts(edgeOptions.dbPath)).synced, {
          ...settlePoll,
          interval: 100,
          message: 'every reading synced on the edge',
        })
        .toBeGreaterThanOrEqual(acknowledged.length);
      expect(await edgeSyncCounts(edgeOptions.dbPath)).toEqual({
        pending: 0,
        syncing: 0,
        synced: acknowledged.length,
        failed: 0,
      });
    },
  );
});
