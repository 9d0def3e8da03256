/**
 * `npm run bench`: end-to-end throughput and latency of one edge agent with 10 sensors, through
 * the real path: sensor (MQTT QoS 1) → edge (libSQL commit, PUBACK) → uplink (mTLS, QoS 1) →
 * Aedes → bridge → PostgreSQL (SERIALIZABLE) → sync/ack → edge marks synced.
 *
 * Phase 1, saturation: every sensor keeps --window readings in flight until --readings in total
 *   are acknowledged; throughput = readings / (first publish → last row committed).
 * Phase 2, paced: every sensor publishes --rate readings/s for --seconds; latency per reading:
 *   publish → row written (synced_at = the writing transaction's start: a lower bound of commit)
 *   publish → sync/ack published after the commit, as seen by an observer on the broker
 *             (an upper bound of commit, ~1 ms above it on loopback)
 *   publish → marked synced on the edge (the ack applied to libSQL, sync_timestamp)
 *
 *   npm run bench -- [--readings 30000] [--window 50] [--rate 100] [--seconds 10] [--in-process]
 *                    [--store-thread worker|event-loop]   (where the edge's SQLite runs; default worker)
 *
 * The broker and the bridge run as their own processes (broker/main.ts, bridge/main.ts), the
 * edge agent and the sensors in this one; --in-process puts everything in one event loop.
 *
 * Results are printed and written to .data/bench/result.json.
 */
import { readTlsFiles } from '../common/tls-files.js';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { createClient } from '@libsql/client';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { topics } from '../schemas/topics.js';
import { startLocalSystem } from '../devtools/local-system.js';
import { connectSensor, standardSensors, type SimulatedSensor } from '../devtools/sensor-simulator.js';

const { values: args } = parseArgs({
  options: {
    readings: { type: 'string', default: '30000' },
    window: { type: 'string', default: '50' },
    rate: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '10' },
    'in-process': { type: 'boolean', default: false },
    'store-thread': { type: 'string', default: 'worker' },
    'in-flight': { type: 'string' },
  },
});
function positiveInt(name: string, raw: string | undefined): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    process.stderr.write(`--${name} must be a positive integer, got '${raw}'\n`);
    process.exit(2);
  }
  return value;
}
const totalReadings = positiveInt('readings', args.readings);
const storeThread = args['store-thread'];
if (storeThread !== 'worker' && storeThread !== 'event-loop') {
  process.stderr.write(`--store-thread must be worker or event-loop, got '${storeThread}'\n`);
  process.exit(2);
}
const window = positiveInt('window', args.window);
const ratePerSensor = positiveInt('rate', args.rate);
const pacedSeconds = positiveInt('seconds', args.seconds);

const SENSOR_COUNT = 10;
const DEVICE_ID = '4a0f6c3d-8e5b-4f1a-9d94-3b7c5e0fa104';
const dataDir = join('.data', 'bench');
rmSync(dataDir, { recursive: true, force: true });
mkdirSync(dataDir, { recursive: true });
const logger = pino({ level: 'warn' }, pino.destination({ dest: join(dataDir, 'system.log'), sync: false }));
const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

say(
  `bench: 1 edge agent, ${SENSOR_COUNT} sensors, ${cpus().length} CPU cores, Node ${process.version}; ` +
    `broker and bridge ${args['in-process'] ? 'in this process' : 'as separate processes'}; edge store on the ${storeThread === 'worker' ? 'worker thread' : 'event loop'}`,
);
const system = await startLocalSystem({
  deviceIds: [DEVICE_ID],
  dataDir,
  certDir: join('certs', 'dev'),
  logger,
  edge: {
    sendLingerMs: 5,
    storeThread,
    ...(args['in-flight'] === undefined ? {} : { maxInFlightBatches: positiveInt('in-flight', args['in-flight']) }),
  },
  // broker and bridge in their own processes, as deployed (the edge's libSQL work is synchronous)
  controlPlane: args['in-process'] ? 'in-process' : 'child-processes',
});
const device = system.devices[0];
if (!device) throw new Error('no device started');
const sensors: SimulatedSensor[] = await Promise.all(
  standardSensors(SENSOR_COUNT).map((spec) => connectSensor(device.sensorUrl, spec)),
);

async function rowCount(): Promise<number> {
  return Number((await system.db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
}
async function waitForRows(expected: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await rowCount()) >= expected) return Date.now();
    if (Date.now() > deadline) throw new Error(`only ${await rowCount()} of ${expected} rows after ${timeoutMs} ms`);
    await sleep(20);
  }
}

// Phase 1: saturation.
const perSensor = Math.ceil(totalReadings / SENSOR_COUNT);
const saturationTotal = perSensor * SENSOR_COUNT;
say(`\nphase 1: saturation, ${saturationTotal} readings, ${window} in flight per sensor`);
const saturationStart = Date.now();
await Promise.all(
  sensors.map(async (sensor) => {
    let sent = 0;
    const inFlight = new Set<Promise<unknown>>();
    while (sent < perSensor) {
      const publish = sensor.publishReading().finally(() => inFlight.delete(publish));
      inFlight.add(publish);
      sent++;
      if (inFlight.size >= window) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  }),
);
const acknowledgedAt = Date.now();
const committedAt = await waitForRows(saturationTotal, 300_000);
const saturation = {
  readings: saturationTotal,
  edgeAcceptedPerSecond: Math.round(saturationTotal / ((acknowledgedAt - saturationStart) / 1000)),
  endToEndPerSecond: Math.round(saturationTotal / ((committedAt - saturationStart) / 1000)),
  seconds: (committedAt - saturationStart) / 1000,
};
say(`  accepted by the edge (PUBACK):  ${saturation.edgeAcceptedPerSecond} readings/s`);
say(
  `  end to end (publish → committed row): ${saturation.endToEndPerSecond} readings/s  (${saturationTotal} in ${saturation.seconds.toFixed(2)} s)`,
);

// An observer (read-only certificate) timestamps every sync/ack: the bridge publishes it right
// after the commit, so its arrival bounds the commit time from above (loopback adds ~1 ms).
const ackSeenAt = new Map<string, number>();
// ... and every telemetry batch the edge sends: when each reading left the edge (after its claim)
const batchSeenAt = new Map<string, number>();
const observerFiles = system.certificates.observers['explorer'];
if (!observerFiles) throw new Error('no observer certificate');
const observer = await mqtt.connectAsync(`mqtts://127.0.0.1:${system.broker.port}`, {
  clientId: 'explorer',
  ...readTlsFiles({ caPath: system.certificates.ca.certPath, ...observerFiles }),
});
observer.on('message', (topic, payload) => {
  const seenAt = Date.now();
  if (topic === topics.telemetry(DEVICE_ID)) {
    const { records } = JSON.parse(payload.toString()) as { records: { id: string }[] };
    for (const record of records) if (!batchSeenAt.has(record.id)) batchSeenAt.set(record.id, seenAt);
    return;
  }
  const batchId = (JSON.parse(payload.toString()) as { batchId: string | null }).batchId;
  if (batchId) ackSeenAt.set(batchId, seenAt);
});
await observer.subscribeAsync(topics.syncAck(DEVICE_ID), { qos: 1 });
await observer.subscribeAsync(topics.telemetry(DEVICE_ID), { qos: 1 });

// Phase 2: paced, for latency.
await sleep(500);
const pacedFrom = new Date();
say(`\nphase 2: paced, ${SENSOR_COUNT} × ${ratePerSensor} readings/s for ${pacedSeconds} s`);
const pacedStartMs = Date.now();
const perSensorPaced = ratePerSensor * pacedSeconds;
// schedule-driven: each tick sends what is due by now, so timer drift does not lower the offered rate
const timers = sensors.map((sensor) => {
  let sent = 0;
  return setInterval(() => {
    const due = Math.min(perSensorPaced, Math.floor(((Date.now() - pacedStartMs) / 1000) * ratePerSensor));
    for (; sent < due; sent++) {
      sensor.publishReading().catch((error: Error) => logger.error({ err: error.message }, 'publish failed'));
    }
  }, 5);
});
await sleep(pacedSeconds * 1000 + 200);
while (sensors.some((sensor) => sensor.inFlight() > 0)) await sleep(20);
timers.forEach(clearInterval);
const pacedPublished = sensors.reduce((sum, sensor) => sum + sensor.acknowledged.length, 0) - saturationTotal;
await waitForRows(saturationTotal + pacedPublished, 120_000);

interface Percentiles {
  p50: number;
  p99: number;
  max: number;
  n: number;
}
const database = await system.db.one<{ p50: number; p99: number; max: number; n: string }>(
  `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
          percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
          max(ms) AS max, count(*) AS n
     FROM (SELECT (extract(epoch FROM (synced_at - "timestamp")) * 1000)::float8 AS ms
             FROM telemetry_data WHERE "timestamp" >= $1) AS latencies`,
  [pacedFrom],
);
const toDatabase: Percentiles = { p50: database.p50, p99: database.p99, max: database.max, n: Number(database.n) };

// the edge marks a reading synced when the bridge's sync/ack (sent after commit) arrives
await sleep(500);
const edgeDb = createClient({ url: `file:${join(dataDir, `edge-${DEVICE_ID}.db`)}` });
const pacedRows = (
  await edgeDb.execute({
    sql: `SELECT timestamp, sync_timestamp, sync_batch_id FROM telemetry_data WHERE timestamp >= ? AND sync_status = 'synced'`,
    args: [pacedFrom.getTime()],
  })
).rows;
edgeDb.close();
await observer.endAsync();
const confirmed = pacedRows
  .map((row) => Number(row['sync_timestamp']) - Number(row['timestamp']))
  .sort((a, b) => a - b);
const ackPublished = pacedRows
  .map((row) => (ackSeenAt.get(row['sync_batch_id'] as string) ?? NaN) - Number(row['timestamp']))
  .filter((ms) => !Number.isNaN(ms))
  .sort((a, b) => a - b);
const pick = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const percentiles = (sorted: number[]): Percentiles => ({
  p50: pick(sorted, 0.5),
  p99: pick(sorted, 0.99),
  max: sorted.at(-1) ?? NaN,
  n: sorted.length,
});
const toAckPublished = percentiles(ackPublished);
const pacedAcknowledged = sensors.flatMap((sensor) =>
  sensor.acknowledged.filter((reading) => reading.publishedAtMs >= pacedFrom.getTime()),
);
const toPuback = percentiles(
  pacedAcknowledged.map((reading) => reading.acknowledgedAtMs - reading.publishedAtMs).sort((a, b) => a - b),
);
const toBatchSent = percentiles(
  pacedAcknowledged
    .map((reading) => (batchSeenAt.get(reading.id) ?? NaN) - reading.publishedAtMs)
    .filter((ms) => !Number.isNaN(ms))
    .sort((a, b) => a - b),
);
const toConfirmation = percentiles(confirmed);

const fmt = (value: number) => `${value.toFixed(1).padStart(7)} ms`;
say(`  readings: ${pacedPublished} (${Math.round(pacedPublished / pacedSeconds)} readings/s offered)`);
say(`                                          median        p99        max`);
say(
  `  publish → PUBACK (stored in libSQL)  ${fmt(toPuback.p50)} ${fmt(toPuback.p99)} ${fmt(toPuback.max)}   (${toPuback.n} readings)`,
);
say(
  `  publish → batch seen on the broker   ${fmt(toBatchSent.p50)} ${fmt(toBatchSent.p99)} ${fmt(toBatchSent.max)}   (${toBatchSent.n} readings)`,
);
say(
  `  publish → row written (synced_at)    ${fmt(toDatabase.p50)} ${fmt(toDatabase.p99)} ${fmt(toDatabase.max)}   (${toDatabase.n} rows)`,
);
say(
  `  publish → sync/ack after commit      ${fmt(toAckPublished.p50)} ${fmt(toAckPublished.p99)} ${fmt(toAckPublished.max)}   (${toAckPublished.n} rows)`,
);
say(
  `  publish → marked synced on the edge  ${fmt(toConfirmation.p50)} ${fmt(toConfirmation.p99)} ${fmt(toConfirmation.max)}   (${toConfirmation.n} rows)`,
);

const result = {
  at: new Date().toISOString(),
  sensors: SENSOR_COUNT,
  cores: cpus().length,
  node: process.version,
  saturation,
  paced: {
    ratePerSensor,
    seconds: pacedSeconds,
    readings: pacedPublished,
    toPuback,
    toBatchSent,
    toDatabase,
    toAckPublished,
    toConfirmation,
  },
};
writeFileSync(join(dataDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);

await Promise.all(sensors.map((sensor) => sensor.close()));
await system.close();
logger.flush();
process.exit(0);
