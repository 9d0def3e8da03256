/**
 * Issue 7, item 2 (G7): one device flooding full batches at 10× its broker rate limit must not
 * stall another device's sync. Broker and bridge run as their own processes (their entry points,
 * default limits: 200 msg/s and 4 MiB/s per device at the broker, bursts of 400 and 1 MiB; MAX_IN_FLIGHT 1000,
 * MAX_IN_FLIGHT_BYTES 64 MiB, DEVICE_MAX_IN_FLIGHT 32 / 8 MiB, BATCH_WRITERS 2 at the bridge),
 * over mutual TLS, with PostgreSQL at SERIALIZABLE. A probe device publishes small batches at a
 * steady pace; its publish → sync/ack latency is measured without the flood and under it, in
 * the same test (this machine is shared and noisy: only a side-by-side ratio means something).
 *
 * Before the fair scheduler, the probe's messages queued behind the flooder's backlog (in one FIFO
 * queue, then in the broker while the bridge paused reading): 44 ms → 47 s median.
 *
 * What this test asserts is weaker than the target (loaded p99 within 2× of unloaded): a
 * timing ratio on a shared two-core machine running the whole system is no pass/fail criterion
 * (speed targets are checked by benchmark scripts that print their numbers). The bench
 * (docs/capacity.md, "Fairness under a flooding device") measures it: within 1.3–2.4× when the
 * flood does not saturate the machine (a 512 KiB/s limit), 1.6–4.0× at the default 4 MiB/s limit
 * (median 2.95× over 9 runs), where the flood alone keeps the two cores about half busy. The probe's small batch is taken alone by
 * the next free writer, its transaction touches only its own device's index pages, and the
 * flooder's messages are parsed on a worker thread; what remains is the flood's cost on the same
 * cores.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { percentile, startProbe, type Probe } from '../../devtools/fairness-load.js';
import { startFloodProcess } from '../../devtools/flood-process.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { scrapeMetric, startBridgeProcess, startBrokerProcess } from '../helpers/system-processes.js';
import { registerCleanup } from '../helpers/teardown.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const FLOODER = '6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a01';
const PROBE = '6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a02';
const SAMPLES = 60;
const INTERVAL_MS = 80;

let certs: TestCertificates;
let postgres: TestPostgres;
const logDir = tempDirectory('bridge-fairness');

beforeAll(async () => {
  [certs, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [FLOODER, PROBE], serviceNames: ['bridge'] }),
    startTestPostgres(),
  ]);
});

describe('fairness under a flooding device', () => {
  it(
    "answers every batch of another device, never refused, with the bridge's memory bounded, while one device floods at 10× its limit (and prints the other device's p50/p99 against its unloaded values)",
    { timeout: 240_000 },
    async () => {
      const broker = await startBrokerProcess({ certificates: certs.bundle, logDir });
      const url = `mqtts://127.0.0.1:${broker.port}`;
      const bridge = await startBridgeProcess({
        certificates: certs.bundle,
        databaseUrl: postgres.connectionString,
        brokerUrl: url,
        logDir,
      });
      const tlsOf = (id: string) => ({ ...certs.devices[id]! });
      const probe: Probe = await startProbe({ url, deviceId: PROBE, clientOptions: tlsOf(PROBE) });
      registerCleanup(() => probe.close());

      await probe.measure(10, INTERVAL_MS); // warm-up: connections, statement plans, JIT
      const unloaded = await probe.measure(SAMPLES, INTERVAL_MS);

      // in its own process, as a real flooding device is another machine (devtools/flood-process.ts)
      const flood = await startFloodProcess({ url, deviceId: FLOODER, clientOptions: tlsOf(FLOODER) });
      registerCleanup(() => flood.stop());
      // under load once the bridge writes the flooder's batches and refuses what is over its bounds
      await expect.poll(() => flood.stats().stored, { timeout: 60_000, interval: 100 }).toBeGreaterThanOrEqual(2);
      let peakHeld = 0;
      let peakRss = 0;
      const sampler = setInterval(() => {
        void scrapeMetric(bridge.metricsUrl, 'bridge_messages_held').then(
          (v) => (peakHeld = Math.max(peakHeld, v)),
          () => undefined,
        );
        void scrapeMetric(bridge.metricsUrl, 'process_resident_memory_bytes').then(
          (v) => (peakRss = Math.max(peakRss, v)),
          () => undefined,
        );
      }, 200);
      registerCleanup(() => clearInterval(sampler));
      const loaded = await probe.measure(SAMPLES, INTERVAL_MS);
      clearInterval(sampler);
      const floodStats = await flood.stop();
      const retries = await scrapeMetric(bridge.metricsUrl, 'bridge_transaction_retries_total');
      const commits = await scrapeMetric(bridge.metricsUrl, 'bridge_telemetry_batch_commit_seconds_count');
      const commitSeconds = await scrapeMetric(bridge.metricsUrl, 'bridge_telemetry_batch_commit_seconds_sum');
      console.info(
        `bridge: ${retries} transaction retries, ${commits} batches, ${((1000 * commitSeconds) / commits).toFixed(0)} ms per batch on average`,
      );

      const p99 = { unloaded: percentile(latencies(unloaded), 99), loaded: percentile(latencies(loaded), 99) };
      const p50 = { unloaded: percentile(latencies(unloaded), 50), loaded: percentile(latencies(loaded), 50) };
      console.info(
        `fairness: probe p50 ${p50.unloaded.toFixed(1)} → ${p50.loaded.toFixed(1)} ms, p99 ${p99.unloaded.toFixed(1)} → ${p99.loaded.toFixed(1)} ms ` +
          `(×${(p99.loaded / p99.unloaded).toFixed(2)}); flooder ${floodStats.published} published, ${floodStats.stored} stored, ` +
          `${floodStats.retryLater} retry-later, offered ${(floodStats.offeredBytesPerS / 1048576).toFixed(1)} MiB/s; ` +
          `bridge peak held ${peakHeld} messages, peak RSS ${(peakRss / 1048576).toFixed(0)} MiB`,
      );
      // the probe holds at most one message at a time: it is never refused, and every batch is answered
      expect([...unloaded, ...loaded].filter((sample) => sample.retryLater)).toEqual([]);
      expect(loaded).toHaveLength(SAMPLES);
      // NOT the 2× bound (see the header): what is asserted is that the flood no longer
      // starves the probe (before: 44 ms → 47 s median, no ack at all for 45 s)
      expect(p50.loaded).toBeLessThan(10_000);
      expect(p99.loaded).toBeLessThan(30_000);
      // bounded memory: MAX_IN_FLIGHT messages at most, RSS far below the 1.3–1.5 GB of before
      expect(peakHeld).toBeLessThanOrEqual(1000);
      expect(peakRss).toBeLessThan(512 * 1024 * 1024);
      // The broker paces the flood to 4 MiB/s after a 1 MiB burst, which the bridge keeps up with
      // here: the flooder's held messages stay within its per-device bound (32), so none of its
      // messages needs a "retry later" (that path: bridge-mqtt-ingest.test.ts, 'holds at most
      // maxInFlight messages while the database waits, and answers the rest "retry later" without
      // storing them'). With the former 8 MiB burst the onset overran it.
      expect(peakHeld).toBeLessThanOrEqual(32 + 1);
    },
  );
});

function latencies(samples: { latencyMs: number }[]): number[] {
  return samples.map((sample) => sample.latencyMs);
}
