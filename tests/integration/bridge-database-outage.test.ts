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
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates } from '../../certs/dev-bundle.js';
import type { Database } from '../../bridge/db/connection.js';
import { readTlsFiles } from '../../common/tls-files.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import type { TelemetryBatch } from '../../schemas/messages.js';
import { CONNECT_TIMEOUT_MS } from '../helpers/mqtt-client.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';
import {
  readJsonLog,
  startBridgeProcess,
  startBrokerProcess,
  type RunningProcess,
} from '../helpers/system-processes.js';
import { connectTelemetryDevice, type TelemetryDevice } from '../helpers/telemetry-device.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = 'db0a7a9e-4c1d-4e8f-9b2a-3c4d5e6f7a80';
/** consecutive failed batches the outage lasts for */
const FAILURES = 7;
/** DEFAULT_FAILURE_BACKOFF: 100 ms doubling; from the 7th failure on the 5 s cap applies */
const UNCAPPED_FAILURES = 6;
const FAILURE_MESSAGE = 'telemetry batch failed; its messages stay unacknowledged and are retried';
/** a few batches through broker, bridge and PostgreSQL */
const poll = { timeout: 15_000, interval: 25 };
/** seven failures in a row, with gaps doubling from 100 ms up to the 5 s cap */
const outagePoll = { timeout: 60_000, interval: 50 };
/** the backlog of the outage committed and confirmed */
const catchUpPoll = { timeout: 30_000, interval: 100 };

let databaseRelay: TcpProxy;
let bridge: RunningProcess;
let device: TelemetryDevice;
let db: Database;

beforeAll(async () => {
  const workDir = tempDirectory('bridge-db-outage');
  const certificates = await ensureDevCertificates({
    dir: join(workDir, 'certs'),
    deviceIds: [DEVICE],
    serviceNames: ['bridge'],
  });
  const postgres = await startTestPostgres();
  databaseRelay = await startTcpProxy({ host: '127.0.0.1', port: postgres.port });
  registerCleanup(() => databaseRelay.close());
  const relayed = new URL(postgres.connectionString);
  relayed.port = String(databaseRelay.port);
  const broker = await startBrokerProcess({ certificates, logDir: workDir });
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
  db = await openTestDatabase(postgres, 'db-outage', { poolSize: 1 });
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
  it(
    'rejects nothing, retries with growing gaps, and commits and acknowledges every reading once the database is back',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, poll.timeout, outagePoll.timeout, 2 * catchUpPoll.timeout) },
    async () => {
      const sent: TelemetryBatch[] = [];
      let sequence = 0;
      const newBatch = (): TelemetryBatch =>
        makeBatch(
          Array.from({ length: 5 }, () => {
            const i = sequence++;
            return makeRecord({
              sensorId: `outage-${i % 3}`,
              atMs: Date.UTC(2026, 0, 1) + i,
              value: 20 + (i % 10),
            });
          }),
        );
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
        await expect
          .poll(() => device.acks.length, { ...poll, message: 'acks while the database is up' })
          .toBeGreaterThanOrEqual(5);
        databaseRelay.cut();
        const sentBeforeOutage = sent.length;
        await expect
          .poll(() => failureLines().length, { ...outagePoll, message: `${FAILURES} failed batches in a row` })
          .toBeGreaterThanOrEqual(FAILURES);
        const sentDuringOutage = sent.length - sentBeforeOutage;
        const acksDuringOutage = device.acks.length;
        databaseRelay.restore();
        expect(sentDuringOutage).toBeGreaterThan(0);
        // nothing was rejected while the database was away
        expect(device.acks.filter((ack) => ack.rejected.length > 0 || ack.error !== undefined)).toEqual([]);
        expect(acksDuringOutage).toBeLessThan(sent.length);

        await expect
          .poll(() => device.acks.length, { ...catchUpPoll, message: 'acks after the database is back' })
          .toBeGreaterThanOrEqual(acksDuringOutage + 5);
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

      // G7: while the database was away the bridge held at most DEVICE_MAX_IN_FLIGHT of this device's
      // messages and answered the rest "retry later" without storing them; like an edge agent, the
      // device sends those again after retryAfterMs until each one is confirmed
      const storedAck = (batchId: string) =>
        device.acks.find((ack) => ack.batchId === batchId && ack.retryAfterMs === undefined);
      const retriedLater = (batchId: string) =>
        device.acks.some((ack) => ack.batchId === batchId && ack.retryAfterMs !== undefined);
      const unconfirmed = () => sent.filter((batch) => storedAck(batch.batchId) === undefined);
      let resending = true;
      const resender = (async () => {
        while (resending) {
          for (const batch of unconfirmed()) if (retriedLater(batch.batchId)) await device.send(batch);
          await new Promise((resolve) => setTimeout(resolve, 1000)); // retryAfterMs
        }
      })();
      // every batch confirmed, nothing rejected, and every reading stored exactly once
      try {
        await expect
          .poll(() => unconfirmed().map((batch) => batch.batchId), {
            ...catchUpPoll,
            message: 'a sync/ack for every batch sent',
          })
          .toEqual([]);
      } finally {
        resending = false;
        await resender;
      }
      const recordsPerBatch = new Map<string | null, number>(
        sent.map((batch) => [batch.batchId, batch.records.length]),
      );
      for (const ack of device.acks.filter((candidate) => candidate.retryAfterMs === undefined)) {
        expect(ack).toMatchObject({ rejected: [], conflicts: 0, accepted: recordsPerBatch.get(ack.batchId) });
        expect(ack.error).toBeUndefined();
      }
      const recordIds = sent.flatMap((batch) => batch.records.map((record) => record.id));
      const stored = await db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
        DEVICE,
      ]);
      expect(stored).toHaveLength(recordIds.length);
      expect(new Set(stored.map((row) => row.id))).toEqual(new Set(recordIds));
    },
  );
});
