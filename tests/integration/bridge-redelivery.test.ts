/**
 * The deferred PUBACK, proven with a crash: a bridge process is killed (SIGKILL) while the
 * message is inside its database transaction. The broker never got a PUBACK for it, so it
 * delivers the message again to the next bridge with the same client id (clean:false session),
 * which commits it and confirms it. Nothing is lost, nothing is stored twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Aedes, type Client } from 'aedes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/logger.js';
import { closeDatabase, openDatabase, type Database } from '../../bridge/db/connection.js';
import { migrate } from '../../bridge/db/migrate.js';
import { startBridge, type RunningBridge } from '../../bridge/service.js';
import type { TelemetryBatch } from '../../schemas/messages.js';
import { ALL_TELEMETRY_FILTER, topics } from '../../schemas/topics.js';
import { freePort } from '../../devtools/free-port.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { connectTelemetryDevice } from '../helpers/telemetry-device.js';
import { BRIDGE_DEFAULTS } from '../../bridge/config.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BRIDGE_ID = 'bridge';
const poll = { timeout: 20_000, interval: 25 };

let postgres: TestPostgres;
let db: Database;
let aedes: Aedes;
let server: Server;
let brokerUrl: string;
const brokerLog: string[] = [];
const brokerClients = new Map<string, Client>();

beforeAll(async () => {
  postgres = await startTestPostgres();
  db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'bridge-redelivery-test' });
  await migrate(db);
  aedes = await Aedes.createBroker();
  aedes.on('subscribe', (subscriptions, client) => {
    for (const s of subscriptions) brokerLog.push(`${client.id} subscribed ${s.topic}`);
  });
  aedes.on('ack', (packet, client) => {
    // packet is undefined when aedes keeps no copy (clean-session clients such as the device)
    if (packet === undefined) brokerLog.push(`${client.id} puback for an unknown message id`);
    else if ('topic' in packet) brokerLog.push(`${client.id} puback ${packet.topic}`);
  });
  aedes.on('clientDisconnect', (client) => brokerLog.push(`${client.id} disconnected`));
  aedes.on('client', (client) => brokerClients.set(client.id, client));
  server = createServer(aedes.handle);
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  brokerUrl = `mqtt://127.0.0.1:${port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await closeDatabase(db);
  await postgres.close();
});

/** The bridge as its own process (bridge/main.ts), so that it can really crash. */
function spawnBridgeProcess(): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'bridge/main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: postgres.connectionString,
      BROKER_URL: brokerUrl,
      BRIDGE_CLIENT_ID: BRIDGE_ID,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

async function bridgeBackends(clientId = BRIDGE_ID): Promise<Array<{ state: string; wait_event_type: string | null }>> {
  return db.any('SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = $1', [clientId]);
}

function bridgeConfig(clientId: string) {
  return {
    databaseUrl: postgres.connectionString,
    brokerUrl,
    tls: null,
    clientId,
    ...BRIDGE_DEFAULTS,
    dbPoolSize: 2,
    http: null,
  };
}

function quietLogger(name: string) {
  const logger = createLogger(name);
  logger.level = 'fatal';
  return logger;
}

function oneReadingBatch(): TelemetryBatch {
  return {
    batchId: randomUUID(),
    records: [
      {
        id: randomUUID(),
        sensorId: 's1',
        dataType: 'temperature',
        timestamp: new Date().toISOString(),
        value: 1,
        version: 1,
      },
    ],
  };
}

describe('deferred PUBACK', () => {
  it('a message in flight when the bridge is killed is redelivered to the next bridge and committed once', async () => {
    const device = await connectTelemetryDevice(brokerUrl);
    const batch = oneReadingBatch();
    const first = spawnBridgeProcess();
    let second: RunningBridge | undefined;
    const lock = await db.connect();
    try {
      await expect.poll(() => brokerLog.includes(`${BRIDGE_ID} subscribed ${ALL_TELEMETRY_FILTER}`), poll).toBe(true);

      // hold the table so that the bridge's transaction cannot get past its INSERT
      await lock.none('BEGIN; LOCK TABLE telemetry_data IN EXCLUSIVE MODE');
      await device.send(batch);
      await expect
        .poll(async () => (await bridgeBackends()).some((b) => b.wait_event_type === 'Lock'), poll)
        .toBe(true);

      expect(brokerLog.filter((line) => line.startsWith(`${BRIDGE_ID} puback`))).toEqual([]);
      first.child.kill('SIGKILL');
      await expect.poll(() => brokerLog.includes(`${BRIDGE_ID} disconnected`), poll).toBe(true);

      // the killed bridge's transaction never commits: PostgreSQL aborts it once its client is gone
      await lock.none('ROLLBACK');
      await expect.poll(async () => (await bridgeBackends()).length, poll).toBe(0);
      expect(
        (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE device_id = $1', [device.id]))
          .n,
      ).toBe(0);
      expect(device.acks).toEqual([]);

      second = await startBridge(bridgeConfig(BRIDGE_ID), { logger: quietLogger('second-bridge') });

      await expect.poll(() => device.acks.length, poll).toBe(1);
      expect(device.acks[0]).toEqual({ batchId: batch.batchId, accepted: 1, rejected: [], conflicts: 0 });
      expect(
        (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE device_id = $1', [device.id]))
          .n,
      ).toBe(1);
      await expect
        .poll(() => brokerLog.filter((line) => line.startsWith(`${BRIDGE_ID} puback`)), poll)
        .toEqual([`${BRIDGE_ID} puback ${topics.telemetry(device.id)}`]);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- first bridge output ---\n${first.output()}`, { cause: error });
    } finally {
      await lock.none('ROLLBACK').catch(() => undefined);
      await lock.done();
      first.child.kill('SIGKILL');
      await second?.close();
      await device.close();
    }
  });

  it('never sends a PUBACK for a delivery of an earlier connection', async () => {
    const clientId = 'bridge-reconnecting';
    const device = await connectTelemetryDevice(brokerUrl);
    const batch = oneReadingBatch();
    const bridge = await startBridge(bridgeConfig(clientId), { logger: quietLogger(clientId) });
    const lock = await db.connect();
    try {
      await lock.none('BEGIN; LOCK TABLE telemetry_data IN EXCLUSIVE MODE');
      await device.send(batch);
      await expect
        .poll(async () => (await bridgeBackends(clientId)).some((b) => b.wait_event_type === 'Lock'), poll)
        .toBe(true);

      // cut the bridge's connection while the message is in its transaction; it reconnects and
      // the broker delivers the message again on the new connection
      brokerClients.get(clientId)?.conn.destroy();
      await expect.poll(() => brokerLog.filter((line) => line === `${clientId} disconnected`).length, poll).toBe(1);
      await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(2);

      await lock.none('COMMIT');
      // first delivery: committed, but its connection is gone, so no PUBACK; the redelivered copy
      // is a duplicate and is confirmed on the current connection
      await expect.poll(() => device.acks.length, poll).toBe(2);
      await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(0);
      expect(device.acks.every((ack) => ack.batchId === batch.batchId && ack.accepted === 1)).toBe(true);
      expect(brokerLog.filter((line) => line.startsWith(`${clientId} puback`))).toEqual([
        `${clientId} puback ${topics.telemetry(device.id)}`,
      ]);
      expect(
        (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE device_id = $1', [device.id]))
          .n,
      ).toBe(1);
    } finally {
      await lock.none('ROLLBACK').catch(() => undefined);
      await lock.done();
      await bridge.close();
      await device.close();
    }
  });
});
