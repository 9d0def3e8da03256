/**
 * bench:fairness — one device floods full batches at 10× its broker rate limit while a probe
 * device publishes a 10-reading batch every 100 ms (issue 7, item 2; G7).
 *
 * Broker and bridge run as their own processes (broker/main.ts, bridge/main.ts) over mutual TLS,
 * with an embedded PostgreSQL at SERIALIZABLE. The limits are the defaults, printed below: at the
 * broker 200 msg/s and 4 MiB/s per device (burst 400 / 1 MiB; disconnected after 10 s over), at
 * the bridge MAX_IN_FLIGHT 1000, MAX_IN_FLIGHT_BYTES 64 MiB, DEVICE_MAX_IN_FLIGHT 32,
 * DEVICE_MAX_IN_FLIGHT_BYTES 8 MiB, BATCH_WRITERS 2 (or --writers). `--limit-kib N` sets the
 * broker's per-device byte limit instead (BROKER_RATE_BYTES_PER_S; the burst, --burst-kib, is
 * the default 1 MiB unless given), and the flood offers 10× whatever the limit is (or
 * --offered-mib). The flooder runs in
 * its own process (devtools/flood-process.ts), as a real flooding device is another machine.
 * Prints, side by side from one run, the probe's publish → sync/ack p50/p99 (and publish → PUBACK)
 * without and with the flood, their ratio, the slowest samples, and the bridge's peak RSS, peak
 * held messages and peak in-flight messages during the flood.
 *
 *   npm run bench:fairness [-- --samples 100] [--writers 2] [--batch-records 2000]
 *                          [--limit-kib 4096] [--burst-kib 1024] [--offered-mib 10×limit] [--warmup-s 3]
 */
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_PUBLISH_RATE_LIMITS } from '../broker/publish-rate-limit.js';
import { readTlsFiles } from '../common/tls-files.js';
import { ensureDevCertificates } from '../certs/dev-bundle.js';
import { spawnEntryPoint, stopProcess, waitHealthy, type Spawned } from '../devtools/control-plane-processes.js';
import { SERIALIZABLE_POSTGRES_FLAGS, startEmbeddedPostgres } from '../devtools/embedded-postgres.js';
import { percentile, startProbe, type ProbeSample } from '../devtools/fairness-load.js';
import { startFloodProcess } from '../devtools/flood-process.js';
import { freePort } from '../devtools/free-port.js';
import { cpuSeconds, machineTicks, processTreeOf } from '../devtools/process-cpu.js';

const { values: args } = parseArgs({
  options: {
    samples: { type: 'string', default: '100' },
    writers: { type: 'string', default: '2' },
    'batch-records': { type: 'string', default: '2000' },
    'limit-kib': { type: 'string', default: '4096' },
    'burst-kib': { type: 'string' },
    'offered-mib': { type: 'string' },
    'warmup-s': { type: 'string', default: '3' },
  },
});
const SAMPLES = Number(args.samples);
const LIMIT_BYTES = Number(args['limit-kib']) * 1024;
const BURST_BYTES =
  args['burst-kib'] === undefined ? DEFAULT_PUBLISH_RATE_LIMITS.bytes.burst : Number(args['burst-kib']) * 1024;
const OFFERED_BYTES = args['offered-mib'] === undefined ? 10 * LIMIT_BYTES : Number(args['offered-mib']) * 1024 * 1024;
const WARMUP_S = Number(args['warmup-s']);
const INTERVAL_MS = 100;
const FLOODER = '7b2e1d3f-4c5a-4b6c-9d7e-8f9a0b1c2d01';
const PROBE = '7b2e1d3f-4c5a-4b6c-9d7e-8f9a0b1c2d02';
const dataDir = join('.data', 'bench-fairness');

async function main(): Promise<void> {
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const certificates = await ensureDevCertificates({
    dir: join(dataDir, 'certs'),
    deviceIds: [FLOODER, PROBE],
    serviceNames: ['bridge'],
  });
  const postgres = await startEmbeddedPostgres({
    port: await freePort(),
    persistent: false,
    postgresFlags: [...SERIALIZABLE_POSTGRES_FLAGS, '-c', 'fsync=off'],
  });
  const [brokerPort, brokerMetrics, bridgeHttp] = [await freePort(), await freePort(), await freePort()];
  const processes: Spawned[] = [];
  try {
    const broker = spawnEntryPoint(
      'broker',
      'broker/main.ts',
      {
        LOG_LEVEL: 'warn',
        BROKER_HOST: '127.0.0.1',
        BROKER_PORT: String(brokerPort),
        METRICS_PORT: String(brokerMetrics),
        BROKER_TLS_CERT: certificates.broker.certPath,
        BROKER_TLS_KEY: certificates.broker.keyPath,
        BROKER_TLS_CA: certificates.ca.certPath,
        BROKER_RATE_BYTES_PER_S: String(LIMIT_BYTES),
        BROKER_RATE_BYTES_BURST: String(BURST_BYTES),
      },
      dataDir,
    );
    processes.push(broker);
    await waitHealthy(broker, `http://127.0.0.1:${brokerMetrics}/healthz`);
    const bridgeFiles = certificates.services['bridge']!;
    const bridge = spawnEntryPoint(
      'bridge',
      'bridge/main.ts',
      {
        LOG_LEVEL: process.env['BRIDGE_LOG_LEVEL'] ?? 'warn',
        DATABASE_URL: postgres.connectionString,
        BROKER_URL: `mqtts://127.0.0.1:${brokerPort}`,
        TLS_CA: certificates.ca.certPath,
        TLS_CERT: bridgeFiles.certPath,
        TLS_KEY: bridgeFiles.keyPath,
        HTTP_PORT: String(bridgeHttp),
        BATCH_WRITERS: String(args.writers),
        BATCH_MAX_RECORDS: String(args['batch-records']),
      },
      dataDir,
    );
    processes.push(bridge);
    await waitHealthy(bridge, `http://127.0.0.1:${bridgeHttp}/healthz`);
    const metricsUrl = `http://127.0.0.1:${bridgeHttp}/metrics`;

    const url = `mqtts://127.0.0.1:${brokerPort}`;
    const tlsOf = (id: string) => {
      const files = readTlsFiles({
        caPath: certificates.ca.certPath,
        certPath: certificates.devices[id]!.certPath,
        keyPath: certificates.devices[id]!.keyPath,
      });
      return { ca: files.ca, cert: files.cert, key: files.key };
    };
    const probe = await startProbe({ url, deviceId: PROBE, clientOptions: tlsOf(PROBE) });
    console.log(
      `bench:fairness — ${cpus().length} cores, Node ${process.version}; broker limits 200 msg/s, ${mib(LIMIT_BYTES)} MiB/s per device (burst ${mib(BURST_BYTES)} MiB), flood offered ${mib(OFFERED_BYTES)} MiB/s; ` +
        `bridge MAX_IN_FLIGHT 1000, MAX_IN_FLIGHT_BYTES 64 MiB, DEVICE_MAX_IN_FLIGHT 32 / 8 MiB, BATCH_WRITERS ${args.writers}, BATCH_MAX_RECORDS ${args['batch-records']}`,
    );
    const floodOptions = { url, deviceId: FLOODER, clientOptions: tlsOf(FLOODER), offeredBytesPerS: OFFERED_BYTES };
    // Warm-up: a long-running bridge has parsed, formatted and written large batches before; the
    // first ones after a start run in V8's interpreter and baseline tiers, which is start-up cost,
    // not the flood's. So the flood runs once for WARMUP_S, then everything drains and the
    // flooder's broker buckets refill (burst / rate) before anything is measured.
    if (WARMUP_S > 0) {
      const warmup = await startFloodProcess(floodOptions);
      await new Promise((resolve) => setTimeout(resolve, WARMUP_S * 1000));
      await warmup.stop();
      for (let waited = 0; waited < 30_000; waited += 250) {
        const held = (await scrape(metricsUrl))['bridge_messages_held'] ?? 0;
        if (held === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(2000, (1000 * BURST_BYTES) / LIMIT_BYTES + 500)));
    }
    await probe.measure(10, INTERVAL_MS);
    const unloaded = await probe.measure(SAMPLES, INTERVAL_MS);

    const cpuOf = () => ({
      broker: cpuSeconds([broker.child.pid ?? 0]),
      bridge: cpuSeconds([bridge.child.pid ?? 0]),
      postgres: cpuSeconds(processTreeOf(postgres.databaseDir)),
      flooder: cpuSeconds(processTreeOf('flood-process.ts')),
      bench: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
      machine: machineTicks(),
      atMs: Date.now(),
    });
    const cpuBefore = cpuOf();
    const ingestedBefore = (await scrape(metricsUrl))['bridge_telemetry_records_ingested_total'] ?? 0;
    const flood = await startFloodProcess(floodOptions);
    const peaks = { rss: 0, held: 0, inFlight: 0, lagMs: 0 };
    const sampler = setInterval(() => {
      void scrape(metricsUrl).then(
        (m) => {
          peaks.rss = Math.max(peaks.rss, m['process_resident_memory_bytes'] ?? 0);
          peaks.held = Math.max(peaks.held, m['bridge_messages_held'] ?? 0);
          peaks.inFlight = Math.max(peaks.inFlight, m['bridge_messages_in_flight'] ?? 0);
          peaks.lagMs = Math.max(peaks.lagMs, 1000 * (m['nodejs_eventloop_lag_max_seconds'] ?? 0));
        },
        () => undefined,
      );
    }, 250); // every 100 ms, formatting /metrics took the bridge about 2% of a core and 2 ms at a time
    const loaded = await probe.measure(SAMPLES, INTERVAL_MS);
    const cpuAfter = cpuOf();
    const ingestedDuring =
      ((await scrape(metricsUrl))['bridge_telemetry_records_ingested_total'] ?? 0) - ingestedBefore;
    clearInterval(sampler);
    const floodStats = await flood.stop();
    await probe.close();
    const final = await scrape(metricsUrl);

    const row = (name: string, samples: ProbeSample[]) => {
      const ms = samples.map((s) => s.latencyMs);
      const puback = samples.map((s) => s.pubackMs).filter((v) => !Number.isNaN(v));
      return (
        `  ${name.padEnd(10)} p50 ${percentile(ms, 50).toFixed(1).padStart(8)} ms   p99 ${percentile(ms, 99).toFixed(1).padStart(8)} ms   ` +
        `(${ms.length} samples, ${samples.filter((s) => s.retryLater).length} retry-later; publish → PUBACK p50 ${percentile(puback, 50).toFixed(1)} ms, p99 ${percentile(puback, 99).toFixed(1)} ms)`
      );
    };
    const latencies = (samples: ProbeSample[]) => samples.map((s) => s.latencyMs);
    const p99 = (samples: ProbeSample[]) => percentile(latencies(samples), 99);
    console.log('probe publish → sync/ack:');
    console.log(row('unloaded', unloaded));
    console.log(row('flood', loaded));
    console.log(`  ratio      p99 ×${(p99(loaded) / p99(unloaded)).toFixed(2)}`);
    const settled = loaded.slice(Math.ceil(2000 / INTERVAL_MS));
    if (settled.length > 0) {
      console.log(
        `  from +2 s  p50 ${percentile(latencies(settled), 50).toFixed(1).padStart(8)} ms   p99 ${p99(settled).toFixed(1).padStart(8)} ms   (${settled.length} samples; ratio ×${(p99(settled) / p99(unloaded)).toFixed(2)})`,
      );
    }
    const slowest = loaded
      .map((sample, index) => ({ ...sample, at: (index * INTERVAL_MS) / 1000 }))
      .sort((a, b) => b.latencyMs - a.latencyMs)
      .slice(0, 5);
    console.log(
      `  slowest under the flood: ${slowest.map((s) => `${s.latencyMs.toFixed(0)} ms (PUBACK ${s.pubackMs.toFixed(0)} ms) at +${s.at.toFixed(1)} s`).join(', ')}`,
    );
    console.log(
      `flooder: offered ${(floodStats.offeredBytesPerS / 1048576).toFixed(1)} MiB/s, ${floodStats.published} published, ` +
        `${floodStats.stored} stored, ${floodStats.retryLater} answered retry-later; ` +
        `the bridge stored ${ingestedDuring} readings during the flood (${(ingestedDuring / ((cpuAfter.atMs - cpuBefore.atMs) / 1000)).toFixed(0)}/s)`,
    );
    const seconds = (cpuAfter.atMs - cpuBefore.atMs) / 1000;
    const share = (key: 'broker' | 'bridge' | 'postgres' | 'flooder' | 'bench') =>
      `${key} ${((100 * (cpuAfter[key] - cpuBefore[key])) / seconds).toFixed(0)}%`;
    const machineBusy =
      (100 * (cpuAfter.machine.busy - cpuBefore.machine.busy)) /
      Math.max(1, cpuAfter.machine.total - cpuBefore.machine.total);
    console.log(
      `CPU during the flood (% of one core): ${(['broker', 'bridge', 'postgres', 'flooder', 'bench'] as const).map(share).join(', ')}; ` +
        `the machine's ${cpus().length} cores ${machineBusy.toFixed(0)}% busy`,
    );
    console.log(
      `bridge during the flood: peak RSS ${(peaks.rss / 1048576).toFixed(0)} MiB, peak held ${peaks.held} messages, ` +
        `peak in flight ${peaks.inFlight}, event-loop lag up to ${peaks.lagMs.toFixed(0)} ms; transaction retries ${final['bridge_transaction_retries_total'] ?? 0}`,
    );
  } finally {
    for (const spawned of processes.reverse()) await stopProcess(spawned);
    await postgres.close();
  }
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(bytes % 1048576 === 0 ? 0 : 2);
}

async function scrape(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(url)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] !== undefined) values[match[1]] = (values[match[1]] ?? 0) + Number(match[3]);
  }
  return values;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
