/**
 * `npm run bench:drain`: how one edge agent drains a large backlog into PostgreSQL, and what its
 * sensors get meanwhile, with the store as it was ("before": SQLite on the agent's event loop,
 * the released-batch lookup unpinned) and as it is ("after": the store worker, every claim/ack
 * statement on its index), side by side in one run.
 *
 * For every backlog size and mode:
 *   1. an edge database with that many pending readings (filled directly, devtools/edge-backlog.ts,
 *      one template per size copied for each mode; PostgreSQL's telemetry is truncated between runs);
 *   2. offline: the uplink cut, 10 sensors at full speed (--window readings in flight each) for
 *      --ingest-seconds: readings accepted (PUBACK after commit) per second, PUBACK latency;
 *   3. drain: the uplink restored, no sensors, for --drain-seconds: rows committed in PostgreSQL
 *      per second (from the first row on);
 *   4. drain + ingest: the same sensors again while the backlog keeps draining: accepted/s,
 *      PUBACK latency, and rows/s into PostgreSQL meanwhile.
 *
 * --heal adds the full-store scenario: the uplink cut, the sensors fill a store capped at
 *   --heal-cap-mib (EDGE_MAX_DB_BYTES, reject-new) until it withholds PUBACKs, then the uplink
 *   returns; it reports the time until the first withheld PUBACK (the store took readings again)
 *   and until the backlog was drained into PostgreSQL, with counts. (The real full disk, a tmpfs,
 *   is exercised by tests/integration/edge-storage-full.test.ts.)
 *
 *   npm run bench:drain -- [--sizes 100000,1000000,3000000] [--modes before,after]
 *                          [--drain-seconds 15] [--ingest-seconds 8] [--window 50]
 *                          [--heal] [--heal-cap-mib 32]    (--sizes '' runs --heal alone)
 *                          [--in-flight 4]   (MAX_IN_FLIGHT_BATCHES of the agent)
 *                          [--warmup 20000]  (an unreported drain first, so no size runs cold; 0: none)
 *
 *
 * Broker and bridge run as their own processes; the edge agent and the sensors run here.
 * Results: printed, and .data/bench-drain/result.json. Each drain also reports the CPU time the
 * processes used (from /proc): the bench process (edge agent, its store worker and the sensors),
 * the broker, the bridge, and PostgreSQL with its backends. Set BENCH_PROFILE_DIR to have the
 * broker and the bridge write V8 CPU profiles there (devtools/cpu-profile-hook.js).
 */
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { childProcesses, cpuSeconds, processTreeOf } from '../devtools/process-cpu.js';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { readTlsFiles } from '../common/tls-files.js';
import { fillEdgeBacklog } from '../devtools/edge-backlog.js';
import { startLocalSystem } from '../devtools/local-system.js';
import { connectSensor, standardSensors, type SimulatedSensor } from '../devtools/sensor-simulator.js';
import { startTcpProxy } from '../devtools/tcp-proxy.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../edge/agent.js';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000,3000000' },
    modes: { type: 'string', default: 'before,after' },
    'drain-seconds': { type: 'string', default: '15' },
    'ingest-seconds': { type: 'string', default: '8' },
    window: { type: 'string', default: '50' },
    heal: { type: 'boolean', default: false },
    'in-flight': { type: 'string', default: '4' },
    'heal-cap-mib': { type: 'string', default: '32' },
    warmup: { type: 'string', default: '20000' },
  },
});
const sizes = (args.sizes ?? '').split(',').filter(Boolean).map(Number);
const healCapBytes = Number(args['heal-cap-mib']) * 1024 * 1024;
const warmupBacklog = Number(args.warmup);
const maxInFlightBatches = Number(args['in-flight']);
const modes = (args.modes ?? '').split(',') as ('before' | 'after')[];
const drainSeconds = Number(args['drain-seconds']);
const ingestSeconds = Number(args['ingest-seconds']);
const window = Number(args.window);
if (sizes.some((size) => !Number.isInteger(size) || size < 0) || modes.some((m) => m !== 'before' && m !== 'after')) {
  process.stderr.write('--sizes takes integers, --modes before and/or after\n');
  process.exit(2);
}

const DEVICE_ID = '6c1e0f3a-2b4d-4e5f-8a9b-0c1d2e3f4a5b';
const SENSORS = 10;
const dataDir = resolve('.data', 'bench-drain');
rmSync(dataDir, { recursive: true, force: true });
mkdirSync(dataDir, { recursive: true });
const logger = pino({ level: 'warn' }, pino.destination({ dest: join(dataDir, 'system.log'), sync: false }));
const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

const profileDir = process.env.BENCH_PROFILE_DIR;
if (profileDir) {
  mkdirSync(profileDir, { recursive: true });
  process.env.CPU_PROFILE_DIR = resolve(profileDir);
  process.env.NODE_OPTIONS = `--import ${resolve('devtools', 'cpu-profile-hook.js')}`;
}
const system = await startLocalSystem({
  deviceIds: [],
  certificateOnlyDeviceIds: [DEVICE_ID],
  dataDir,
  certDir: join('certs', 'dev'),
  logger,
  controlPlane: 'child-processes',
});
delete process.env.NODE_OPTIONS;
delete process.env.CPU_PROFILE_DIR;

interface CpuSnapshot {
  atMs: number;
  bench: number;
  broker: number;
  bridge: number;
  postgres: number;
}
function cpuSnapshot(): CpuSnapshot {
  const usage = process.cpuUsage();
  return {
    atMs: Date.now(),
    bench: (usage.user + usage.system) / 1e6,
    broker: cpuSeconds(childProcesses(process.pid, 'broker/main.ts')),
    bridge: cpuSeconds(childProcesses(process.pid, 'bridge/main.ts')),
    postgres: cpuSeconds(processTreeOf(system.postgres.databaseDir)),
  };
}
type ProcessName = 'bench' | 'broker' | 'bridge' | 'postgres';
/**
 * CPU microseconds each process spent per row drained between two snapshots. Per row rather than
 * per second: on a machine shared with other work, a process's share of a core says more about
 * the scheduler than about the process.
 */
function cpuPerRow(from: CpuSnapshot, to: CpuSnapshot, rows: number): Record<ProcessName, number> {
  const perRow = (key: ProcessName) => Math.round((1e6 * (to[key] - from[key])) / Math.max(1, rows));
  return { bench: perRow('bench'), broker: perRow('broker'), bridge: perRow('bridge'), postgres: perRow('postgres') };
}
const files = system.certificates.devices[DEVICE_ID];
if (!files) throw new Error('no device certificate');
const tls = readTlsFiles({ caPath: system.certificates.ca.certPath, ...files });
say(
  `bench:drain — 1 edge agent (${maxInFlightBatches} batches in flight), ${SENSORS} sensors × ${window} readings in flight, ${cpus().length} cores, Node ${process.version}; ` +
    'broker and bridge as separate processes, PostgreSQL embedded',
);

async function rowsInDatabase(): Promise<number> {
  return Number((await system.db.one<{ n: string }>('SELECT count(*) AS n FROM telemetry_data')).n);
}

interface IngestResult {
  acceptedPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rowsPerSecond: number;
}

const percentile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** Every sensor keeps `window` readings in flight for `seconds`; PUBACK latency per reading. */
async function ingest(sensors: SimulatedSensor[], seconds: number): Promise<IngestResult> {
  const rowsBefore = await rowsInDatabase();
  const startMs = Date.now();
  const stopAt = startMs + seconds * 1000;
  const latencies: number[] = [];
  await Promise.all(
    sensors.map(async (sensor) => {
      const inFlight = new Set<Promise<unknown>>();
      while (Date.now() < stopAt) {
        const publish = sensor
          .publishReading()
          .then((reading) => {
            if (reading.acknowledgedAtMs <= stopAt) latencies.push(reading.acknowledgedAtMs - reading.publishedAtMs);
          })
          .finally(() => inFlight.delete(publish));
        inFlight.add(publish);
        if (inFlight.size >= window) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    }),
  );
  const elapsed = (Date.now() - startMs) / 1000;
  const rowsAfter = await rowsInDatabase();
  latencies.sort((a, b) => a - b);
  return {
    acceptedPerSecond: Math.round(latencies.length / seconds),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    rowsPerSecond: Math.round((rowsAfter - rowsBefore) / elapsed),
  };
}

/** Rows per second into PostgreSQL, from the first row on, for `seconds` or until `total` rows. */
/** sum and count of edge_batch_ack_latency_seconds */
async function ackLatency(agent: EdgeAgent): Promise<{ sum: number; count: number }> {
  const values = (await agent.metrics.batchAckLatency.get()).values;
  const sum = values.find((value) => value.metricName === 'edge_batch_ack_latency_seconds_sum')?.value ?? 0;
  const count = values.find((value) => value.metricName === 'edge_batch_ack_latency_seconds_count')?.value ?? 0;
  return { sum, count };
}

async function drainRate(
  agent: EdgeAgent,
  total: number,
  seconds: number,
): Promise<{
  rowsPerSecond: number;
  steadyRowsPerSecond: number;
  rows: number;
  cpuMicrosPerRow: Record<ProcessName, number>;
  meanAckLatencyMs: number;
}> {
  const firstDeadline = Date.now() + 60_000;
  let rows = await rowsInDatabase();
  while (rows === 0) {
    if (Date.now() > firstDeadline) throw new Error('no row reached PostgreSQL within 60 s');
    await sleep(50);
    rows = await rowsInDatabase();
  }
  const startMs = Date.now();
  const startRows = rows;
  const cpuFrom = cpuSnapshot();
  const ackFrom = await ackLatency(agent);
  const samples: { atMs: number; rows: number }[] = [{ atMs: startMs, rows }];
  while (Date.now() - startMs < seconds * 1000 && rows < total) {
    await sleep(250);
    rows = await rowsInDatabase();
    samples.push({ atMs: Date.now(), rows });
  }
  const ackTo = await ackLatency(agent);
  return {
    meanAckLatencyMs: Math.round((1000 * (ackTo.sum - ackFrom.sum)) / Math.max(1, ackTo.count - ackFrom.count)),
    rowsPerSecond: Math.round((rows - startRows) / ((Date.now() - startMs) / 1000)),
    steadyRowsPerSecond: steadyRate(samples, total),
    rows: rows - startRows,
    cpuMicrosPerRow: cpuPerRow(cpuFrom, cpuSnapshot(), rows - startRows),
  };
}

/**
 * The drain rate with the ends cut off, so that backlogs of different sizes compare like for
 * like: from 1 s after the first row (the pipeline filling: claims, in-flight window, the
 * bridge's first batches) to the last sample before 80% of the backlog is in (a small backlog
 * runs dry within the window, and its last in-flight batches trickle in).
 */
function steadyRate(samples: readonly { atMs: number; rows: number }[], total: number): number {
  const first = samples[0];
  if (!first) return 0;
  const from = samples.find((sample) => sample.atMs - first.atMs >= 1000) ?? first;
  const inWindow = samples.filter((sample) => sample.atMs > from.atMs && sample.rows <= 0.8 * total);
  const to = inWindow[inWindow.length - 1];
  if (!to) return 0;
  return Math.round((to.rows - from.rows) / ((to.atMs - from.atMs) / 1000));
}

interface ScenarioResult {
  backlog: number;
  mode: 'before' | 'after';
  offline: IngestResult;
  drain: Awaited<ReturnType<typeof drainRate>>;
  duringDrain: IngestResult;
}
const results: ScenarioResult[] = [];

/** The edge agent of every scenario: its uplink through `uplinkPort` (the outage proxy), quick reconnects. */
function startDrainAgent(dbPath: string, uplinkPort: number, extra: Partial<EdgeAgentConfig>): Promise<EdgeAgent> {
  return startEdgeAgent({
    deviceId: DEVICE_ID,
    dbUrl: `file:${dbPath}`,
    sensorPort: 0,
    brokerUrl: `mqtts://127.0.0.1:${uplinkPort}`,
    tls,
    ackTimeoutMs: 120_000,
    syncIntervalMs: 1_000,
    sendLingerMs: 5,
    reconnectPolicy: { initialDelayMs: 100, maxDelayMs: 500, multiplier: 2, jitter: 'equal' },
    logger,
    ...extra,
  });
}

async function runScenario(backlog: number, mode: 'before' | 'after', template: string): Promise<ScenarioResult> {
  await system.db.none('TRUNCATE telemetry_data, conflict_log');
  const dbPath = join(dataDir, `edge-${mode}.db`);
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
  copyFileSync(template, dbPath);
  const uplink = await startTcpProxy({ host: '127.0.0.1', port: system.broker.port });
  uplink.cut();
  const agent = await startDrainAgent(dbPath, uplink.port, {
    maxInFlightBatches,
    storeThread: mode === 'before' ? 'event-loop' : 'worker',
    legacyClaimPlan: mode === 'before',
  });
  const sensors = await Promise.all(
    standardSensors(SENSORS).map((spec) => connectSensor(`mqtt://127.0.0.1:${agent.sensorPort}`, spec)),
  );
  const offline = await ingest(sensors, ingestSeconds);
  uplink.restore();
  const drain = await drainRate(agent, backlog, drainSeconds);
  const duringDrain = await ingest(sensors, ingestSeconds);
  await Promise.all(sensors.map((sensor) => sensor.close()));
  await agent.close();
  await uplink.close();
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
  return { backlog, mode, offline, drain, duringDrain };
}

if (warmupBacklog > 0 && sizes.length > 0) {
  // Not reported: the first scenario would otherwise pay for cold JIT in the agent, the broker and
  // the bridge and for PostgreSQL's empty caches, and compare unfairly with the later sizes.
  const template = join(dataDir, 'template-warmup.db');
  await fillEdgeBacklog(template, DEVICE_ID, [{ count: warmupBacklog, startMs: Date.now() - 86_400_000 }]);
  await runScenario(warmupBacklog, 'after', template);
  rmSync(template, { force: true });
  say(`(warm-up drain of ${warmupBacklog.toLocaleString('en')} readings done, not reported)`);
}

for (const backlog of sizes) {
  const template = join(dataDir, `template-${backlog}.db`);
  const fillStart = Date.now();
  await fillEdgeBacklog(template, DEVICE_ID, [{ count: backlog, startMs: Date.now() - 86_400_000 }]);
  say(`\nbacklog ${backlog.toLocaleString('en')} pending readings (filled in ${(Date.now() - fillStart) / 1000} s)`);
  for (const mode of modes) {
    const { offline, drain, duringDrain } = await runScenario(backlog, mode, template);
    results.push({ backlog, mode, offline, drain, duringDrain });
    say(
      `  ${mode.padEnd(6)} offline: ${String(offline.acceptedPerSecond).padStart(6)} accepted/s, PUBACK p50 ${offline.p50Ms} ms p99 ${offline.p99Ms} ms` +
        ` | drain: ${String(drain.rowsPerSecond).padStart(6)} rows/s, steady ${drain.steadyRowsPerSecond} rows/s (${drain.rows} rows; batch ack latency ${drain.meanAckLatencyMs} ms; CPU µs per row: ${Object.entries(
          drain.cpuMicrosPerRow,
        )
          .map(([name, percent]) => `${name} ${percent}`)
          .join(', ')})` +
        ` | during drain: ${String(duringDrain.acceptedPerSecond).padStart(6)} accepted/s` +
        ` (${Math.round((100 * duringDrain.acceptedPerSecond) / Math.max(1, offline.acceptedPerSecond))}% of offline),` +
        ` PUBACK p50 ${duringDrain.p50Ms} ms p99 ${duringDrain.p99Ms} ms, ${duringDrain.rowsPerSecond} rows/s into PostgreSQL`,
    );
  }
  rmSync(template, { force: true });
}

if (sizes.length > 0) say('\ndrain rate (rows/s into PostgreSQL), after / before:');
for (const backlog of sizes) {
  const before = results.find((r) => r.backlog === backlog && r.mode === 'before');
  const after = results.find((r) => r.backlog === backlog && r.mode === 'after');
  if (before && after) {
    say(
      `  ${backlog.toLocaleString('en').padStart(9)} pending: ${after.drain.rowsPerSecond} / ${before.drain.rowsPerSecond}` +
        ` = ${(after.drain.rowsPerSecond / Math.max(1, before.drain.rowsPerSecond)).toFixed(2)}×`,
    );
  }
}
const afterRates = results
  .filter((r) => r.mode === 'after')
  .map((r) => [r.backlog, r.drain.rowsPerSecond, r.drain.steadyRowsPerSecond] as const);
if (afterRates.length > 1) {
  const [smallest, largest] = [afterRates[0]!, afterRates[afterRates.length - 1]!];
  const percent = (a: number, b: number): string => ((100 * a) / Math.max(1, b)).toFixed(0);
  say(
    `  after: the rate at ${largest[0].toLocaleString('en')} is ${percent(largest[1], smallest[1])}% of the rate at ${smallest[0].toLocaleString('en')}` +
      ` (steady: ${largest[2]} / ${smallest[2]} rows/s = ${percent(largest[2], smallest[2])}%)`,
  );
}
interface HealResult {
  capBytes: number;
  acceptedBeforeFull: number;
  fillSeconds: number;
  withheldWhenRestored: number;
  firstPubackAfterRestoreMs: number;
  allWithheldPubackedMs: number;
  drainedMs: number;
  rowsInDatabase: number;
}
let heal: HealResult | undefined;

/** The store fills up with the uplink cut; how long until it takes readings again and has drained, after the uplink returns. */
async function healScenario(): Promise<HealResult> {
  await system.db.none('TRUNCATE telemetry_data, conflict_log');
  const dbPath = join(dataDir, 'edge-heal.db');
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
  const uplink = await startTcpProxy({ host: '127.0.0.1', port: system.broker.port });
  uplink.cut();
  const agent = await startDrainAgent(dbPath, uplink.port, { maxDbBytes: healCapBytes, overflowPolicy: 'reject-new' });
  const sensors = await Promise.all(
    standardSensors(SENSORS).map((spec) => connectSensor(`mqtt://127.0.0.1:${agent.sensorPort}`, spec)),
  );
  const fillStart = Date.now();
  let running = true;
  const waiting = new Set<Promise<unknown>>();
  const acknowledgedIds = new Set<string>();
  for (const sensor of sensors) {
    void (async () => {
      const mine = new Set<Promise<unknown>>();
      while (running) {
        const publish = sensor.publishReading().then((reading) => acknowledgedIds.add(reading.id));
        const tracked = publish.finally(() => {
          mine.delete(tracked);
          waiting.delete(tracked);
        });
        mine.add(tracked);
        waiting.add(tracked);
        if (mine.size >= window) await Promise.race(mine);
      }
    })();
  }
  for (;;) {
    const stats = await agent.stats();
    if (!stats.storage.accepting && stats.storage.withheld > 0) break;
    await sleep(50);
  }
  running = false;
  const fillSeconds = (Date.now() - fillStart) / 1000;
  const acceptedBeforeFull = acknowledgedIds.size;
  await sleep(3000); // full for a while: PUBACKs withheld, sensors connected
  const withheldWhenRestored = waiting.size;
  const restoredAt = Date.now();
  uplink.restore();
  while (acknowledgedIds.size === acceptedBeforeFull) await sleep(10);
  const firstPubackAfterRestoreMs = Date.now() - restoredAt;
  while (waiting.size > 0) await sleep(20);
  const allWithheldPubackedMs = Date.now() - restoredAt;
  while ((await rowsInDatabase()) < acknowledgedIds.size) await sleep(100);
  const drainedMs = Date.now() - restoredAt;
  const result = {
    capBytes: healCapBytes,
    acceptedBeforeFull,
    fillSeconds,
    withheldWhenRestored,
    firstPubackAfterRestoreMs,
    allWithheldPubackedMs,
    drainedMs,
    rowsInDatabase: await rowsInDatabase(),
  };
  await Promise.all(sensors.map((sensor) => sensor.close()));
  await agent.close();
  await uplink.close();
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
  return result;
}

if (args.heal) {
  say(`
heal: a store capped at ${healCapBytes / 1024 / 1024} MiB fills with the uplink cut, then the uplink returns`);
  heal = await healScenario();
  say(
    `  ${heal.acceptedBeforeFull} readings accepted in ${heal.fillSeconds.toFixed(1)} s until full; ` +
      `${heal.withheldWhenRestored} PUBACKs withheld when the uplink returned`,
  );
  say(
    `  after the uplink returned: first withheld PUBACK ${heal.firstPubackAfterRestoreMs} ms, all withheld PUBACKed ` +
      `${heal.allWithheldPubackedMs} ms, everything in PostgreSQL ${heal.drainedMs} ms (${heal.rowsInDatabase} rows)`,
  );
}

writeFileSync(
  join(dataDir, 'result.json'),
  `${JSON.stringify({ at: new Date().toISOString(), cores: cpus().length, results, heal }, null, 2)}\n`,
);
await system.close();
logger.flush();
process.exit(0);
