/**
 * The load of the fairness test and of `npm run bench:fairness` (issue 7, item 2): a flooding
 * device that keeps far more full telemetry batches in flight than its broker rate limit lets
 * through, and a probe device that publishes small batches at a steady pace and measures, for each,
 * the time from its publish to its sync/ack. Raw MQTT clients (no edge agent): the flooder ignores
 * "retry later" on purpose, as a misbehaving device would.
 */
import { TCP_NO_DELAY } from '../common/no-delay.js';
import { randomUUID } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { SyncAck, TelemetryBatch, TelemetryRecord } from '../schemas/messages.js';
import { topics } from '../schemas/topics.js';

export interface LoadDeviceOptions {
  url: string;
  deviceId: string;
  /** TLS material and anything else for mqtt.connect */
  clientOptions?: IClientOptions;
}

async function connectDevice(
  { url, deviceId, clientOptions }: LoadDeviceOptions,
  reconnectPeriod = 0,
): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    clientId: deviceId,
    clean: true,
    reconnectPeriod,
    connectTimeout: 30_000,
    ...TCP_NO_DELAY, // as the edge agent (common/no-delay.ts)
    ...clientOptions,
  });
  await client.subscribeAsync(topics.syncAck(deviceId), { qos: 1 });
  return client;
}

/** `count` valid records of about `recordBytes` bytes of JSON each, stamped around now. */
export function loadRecords(count: number, recordBytes = 200): TelemetryRecord[] {
  const now = Date.now();
  const padding = 'x'.repeat(Math.max(0, recordBytes - 190));
  return Array.from({ length: count }, (_, i) => ({
    id: randomUUID(),
    sensorId: 'load-1',
    dataType: 'temperature',
    timestamp: new Date(now - i).toISOString(),
    value: i,
    unit: 'C',
    metadata: padding.length > 0 ? { padding } : null,
    version: 1,
  }));
}

export interface FloodStats {
  published: number;
  stored: number;
  retryLater: number;
  offeredBytesPerS: number;
}

export interface Flood {
  stats(): FloodStats;
  /** Stops publishing and disconnects. Idempotent. */
  stop(): Promise<FloodStats>;
}

export interface FloodOptions extends LoadDeviceOptions {
  /** records per batch; default 1000 (a full edge batch) */
  recordsPerBatch?: number;
  /** bytes of JSON per record; default 600 (1000 records ≈ 600 KB, below the 768 KB batch limit) */
  recordBytes?: number;
  /** payload bytes per second offered; default 40 MiB/s (10× the broker's default 4 MiB/s) */
  offeredBytesPerS?: number;
  /** publishes waiting for the broker's PUBACK at most; default 64 */
  window?: number;
}

/** A device offering `offeredBytesPerS` of full batches, as many as its window of unacknowledged publishes allows. */
export async function startFlood(options: FloodOptions): Promise<Flood> {
  // reconnects at once: the broker disconnects a device that stays over its rate limit for 10 s
  const client = await connectDevice(options, 500);
  const recordsPerBatch = options.recordsPerBatch ?? 1000;
  const recordBytes = options.recordBytes ?? 600;
  const offered = options.offeredBytesPerS ?? 40 * 1024 * 1024;
  const window = options.window ?? 64;
  const stats = { published: 0, stored: 0, retryLater: 0 };
  client.on('message', (_topic, payload) => {
    const ack = JSON.parse(payload.toString()) as SyncAck;
    if (ack.retryAfterMs !== undefined) stats.retryLater += 1;
    else stats.stored += 1;
  });
  // a few record sets, re-sent under new ids each time: building 1000 records per publish would load the test process
  const templates = Array.from({ length: 8 }, () => loadRecords(recordsPerBatch, recordBytes));
  const batchBytes = JSON.stringify({ batchId: randomUUID(), records: templates[0] }).length;
  let sequence = 0;
  // a payload with new ids, as bytes: mqtt.js would encode a string again on every re-send
  const nextPayload = (): Buffer => {
    const template = templates[sequence % templates.length] as TelemetryRecord[];
    sequence += 1;
    const records = template.map((record) => ({ ...record, id: randomUUID() }));
    const batch: TelemetryBatch = { batchId: randomUUID(), records };
    return Buffer.from(JSON.stringify(batch));
  };
  // the first window is built before the flood starts, as a device's backlog exists before it
  // sends it: building 64 batches in the first second took this process half a core on the
  // machine the bridge shares with it
  const ready = Array.from({ length: window }, nextPayload);
  const intervalMs = Math.max(1, (1000 * batchBytes) / offered);
  const startedAt = Date.now();
  let outstanding = 0;
  let stopped = false;
  const publishOne = (): void => {
    if (stopped || outstanding >= window) return;
    outstanding += 1;
    stats.published += 1;
    client.publish(topics.telemetry(options.deviceId), ready.shift() ?? nextPayload(), { qos: 1 }, () => {
      outstanding -= 1;
    });
  };
  const timer = setInterval(publishOne, intervalMs);
  let stopping: Promise<FloodStats> | undefined;
  const snapshot = (): FloodStats => ({
    ...stats,
    offeredBytesPerS: (stats.published * batchBytes) / Math.max(0.001, (Date.now() - startedAt) / 1000),
  });
  return {
    stats: snapshot,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        clearInterval(timer);
        await client.endAsync(true);
        return snapshot();
      })()),
  };
}

export interface ProbeSample {
  /** publish → sync/ack */
  latencyMs: number;
  /** publish → the broker's PUBACK (the broker's own share of the latency) */
  pubackMs: number;
  retryLater: boolean;
}

export interface Probe {
  /** Publishes `count` batches of `recordsPerBatch`, one every `intervalMs`, and resolves with each publish → sync/ack latency. */
  measure(count: number, intervalMs: number, timeoutMs?: number): Promise<ProbeSample[]>;
  close(): Promise<void>;
}

export async function startProbe(options: LoadDeviceOptions & { recordsPerBatch?: number }): Promise<Probe> {
  const client = await connectDevice(options);
  const recordsPerBatch = options.recordsPerBatch ?? 10;
  const waiting = new Map<string, { sentAt: number; pubackMs: number; resolve: (sample: ProbeSample) => void }>();
  client.on('message', (_topic, payload) => {
    const ack = JSON.parse(payload.toString()) as SyncAck;
    const entry = ack.batchId === null ? undefined : waiting.get(ack.batchId);
    if (entry === undefined || ack.batchId === null) return;
    waiting.delete(ack.batchId);
    entry.resolve({
      latencyMs: performance.now() - entry.sentAt,
      pubackMs: entry.pubackMs,
      retryLater: ack.retryAfterMs !== undefined,
    });
  });
  return {
    measure: async (count, intervalMs, timeoutMs = 120_000) => {
      const samples: Promise<ProbeSample>[] = [];
      for (let i = 0; i < count; i += 1) {
        const batch: TelemetryBatch = { batchId: randomUUID(), records: loadRecords(recordsPerBatch) };
        samples.push(
          new Promise<ProbeSample>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`no sync/ack for probe batch ${i} within ${timeoutMs} ms`)),
              timeoutMs,
            );
            waiting.set(batch.batchId, {
              sentAt: performance.now(),
              pubackMs: Number.NaN,
              resolve: (sample) => {
                clearTimeout(timer);
                resolve(sample);
              },
            });
          }),
        );
        const entry = waiting.get(batch.batchId);
        client.publish(topics.telemetry(options.deviceId), JSON.stringify(batch), { qos: 1 }, () => {
          if (entry !== undefined) entry.pubackMs = performance.now() - entry.sentAt;
        });
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
      return Promise.all(samples);
    },
    close: () => client.endAsync(true),
  };
}

/** The p-th percentile (0–100) by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}
