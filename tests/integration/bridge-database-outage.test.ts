/**
 * The database goes away while telemetry flows in, and comes back. What the README claims
 * (bridge/ingest/ingest-pipeline.ts): a failed batch stays unacknowledged and is retried after a
 * growing backoff; an outage is not the messages' fault, so nothing is rejected; afterwards
 * everything is committed once and confirmed.
 *
 * Broker and bridge are processes over mutual TLS; a TCP relay between the bridge and PostgreSQL
 * is cut (open connections reset, new ones refused) for as long as it takes the bridge to fail
 * seven times in a row, i.e. several seconds. The retries are read from the bridge's log, the
 * line it writes for each failed batch with the failure count and the delay before the next try.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { closeDatabase, openDatabase, type Database } from '../../bridge/db/connection.js';
import { readTlsFiles } from '../../common/tls-files.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import type { TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import {
  readJsonLog,
  startBridgeProcess,
  startBrokerProcess,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { connectTelemetryDevice, type TelemetryDevice } from '../helpers/telemetry-device.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = 'db0a7a9e-4c1d-4e8f-9b2a-3c4d5e6f7a80';
/** consecutive failed batches the outage lasts for */
const FAILURES = 7;
/** DEFAULT_FAILURE_BACKOFF: 100 ms doubling; from the 7th failure on the 5 s cap applies */
const UNCAPPED_FAILURES = 6;
const FAILURE_MESSAGE = 'telemetry batch failed; its messages stay unacknowledged and are retried';

let workDir: string;
let certificates: CertificateBundle;
let postgres: TestPostgres;
let databaseRelay: TcpProxy;
let broker: RunningProcess & { port: number };
let bridge: RunningProcess;
let device: TelemetryDevice;
let db: Database;

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'bridge-db-outage-'));
  certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE],
    serviceNames: ['bridge'],
  });
  postgres = await startTestPostgres();
  databaseRelay = await startTcpProxy({ host: '127.0.0.1', port: postgres.port });
  const relayed = new URL(postgres.connectionString);
  relayed.port = String(databaseRelay.port);
  broker = await startBrokerProcess({ certificates, logDir: workDir });
  bridge = await startBridgeProcess({
    certificates,
    databaseUrl: relayed.toString(),
    brokerUrl: `mqtts://localhost:${broker.port}`,
    logDir: workDir,
    logLevel: 'info',
  });
  const files = certificates.devices[DEVICE]!;
  device = await connectTelemetryDevice(
    `mqtts://localhost:${broker.port}`,
    DEVICE,
    readTlsFiles({ caPath: certificates.ca.certPath, certPath: files.certPath, keyPath: files.keyPath }),
  );
  db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'db-outage', poolSize: 1 });
});

afterAll(async () => {
  await device?.close();
  await bridge?.close();
  await broker?.close();
  await databaseRelay?.close();
  if (db) await closeDatabase(db);
  await postgres?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

interface FailureLine {
  time: number;
  consecutiveFailures: number;
  retryInMs: number;
}

function failureLines(): FailureLine[] {
  return readJsonLog(bridge.logPath)
    .filter((line) => line['msg'] === FAILURE_MESSAGE)
    .map((line) => ({
      time: Number(line['time']),
      consecutiveFailures: Number(line['consecutiveFailures']),
      retryInMs: Number(line['retryInMs']),
    }));
}

describe('bridge while the database is down', () => {
  it('rejects nothing, retries with growing gaps, and commits and acknowledges every reading once the database is back', async () => {
    const sent: TelemetryBatch[] = [];
    let sequence = 0;
    const newBatch = (): TelemetryBatch => {
      const records: TelemetryRecord[] = Array.from({ length: 5 }, () => {
        const i = sequence++;
        return {
          id: randomUUID(),
          sensorId: `outage-${i % 3}`,
          dataType: 'temperature',
          timestamp: new Date(Date.UTC(2026, 0, 1) + i).toISOString(),
          value: 20 + (i % 10),
          unit: 'C',
          metadata: null,
          version: 1,
        };
      });
      return { batchId: randomUUID(), records };
    };
    let sending = true;
    const sender = (async () => {
      while (sending) {
        const batch = newBatch();
        sent.push(batch);
        await device.send(batch); // the broker's PUBACK: the broker has it, nothing more
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    try {
      await waitFor(
        'acks while the database is up',
        () => device.acks.length,
        (n) => n >= 5,
      );
      databaseRelay.cut();
      const sentBeforeOutage = sent.length;
      await waitFor(
        `${FAILURES} failed batches in a row`,
        () => failureLines().length,
        (n) => n >= FAILURES,
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      const sentDuringOutage = sent.length - sentBeforeOutage;
      const acksDuringOutage = device.acks.length;
      databaseRelay.restore();
      expect(sentDuringOutage).toBeGreaterThan(0);
      // nothing was rejected while the database was away
      expect(device.acks.filter((ack) => ack.rejected.length > 0 || ack.error !== undefined)).toEqual([]);
      expect(acksDuringOutage).toBeLessThan(sent.length);

      await waitFor(
        'acks after the database is back',
        () => device.acks.length,
        (n) => n >= acksDuringOutage + 5,
        {
          timeoutMs: 30_000,
        },
      );
    } finally {
      sending = false;
      await sender;
    }

    // one failure after another, each announced delay at least as long as the one before
    // (equal jitter: the k+1st delay is at least the k-th's ceiling) until the cap, and honoured
    const failures = failureLines();
    expect(failures.map((line) => line.consecutiveFailures)).toEqual(
      Array.from({ length: failures.length }, (_, index) => index + 1),
    );
    const uncapped = failures.slice(0, UNCAPPED_FAILURES).map((line) => line.retryInMs);
    for (let k = 1; k < uncapped.length; k += 1) expect(uncapped[k]).toBeGreaterThanOrEqual(uncapped[k - 1]!);
    expect(uncapped[UNCAPPED_FAILURES - 1]!).toBeGreaterThanOrEqual(8 * uncapped[0]!);
    for (let k = 1; k < failures.length; k += 1) {
      const waited = failures[k]!.time - failures[k - 1]!.time;
      expect(waited).toBeGreaterThanOrEqual(failures[k - 1]!.retryInMs - 2); // timer and log clocks: 1 ms each
    }

    // every batch confirmed, nothing rejected, and every reading stored exactly once
    const sentIds = new Set(sent.map((batch) => batch.batchId));
    await waitFor(
      'a sync/ack for every batch sent',
      () => new Set(device.acks.map((ack) => ack.batchId)),
      (acked) => [...sentIds].every((id) => acked.has(id)),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const recordsPerBatch = new Map<string | null, number>(sent.map((batch) => [batch.batchId, batch.records.length]));
    for (const ack of device.acks) {
      expect(ack).toMatchObject({ rejected: [], conflicts: 0, accepted: recordsPerBatch.get(ack.batchId) });
      expect(ack.error).toBeUndefined();
    }
    const recordIds = sent.flatMap((batch) => batch.records.map((record) => record.id));
    const stored = await db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
      DEVICE,
    ]);
    expect(stored).toHaveLength(recordIds.length);
    expect(new Set(stored.map((row) => row.id))).toEqual(new Set(recordIds));
  }, 180_000);
});
