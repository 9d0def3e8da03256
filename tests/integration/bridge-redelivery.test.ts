/**
 * The deferred PUBACK, proven with a crash: a bridge process is killed (SIGKILL) while the
 * message is inside its database transaction. The broker never got a PUBACK for it, so it
 * delivers the message again to the next bridge with the same client id (clean:false session),
 * which commits it and confirms it. Nothing is lost, nothing is stored twice.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import type { RunningBridge } from '../../bridge/service.js';
import { ALL_TELEMETRY_FILTER, topics } from '../../schemas/topics.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { spawnEntryProcess } from '../helpers/entry-process.js';
import {
  lockTable,
  openTestDatabase,
  startTestPostgres,
  storedRowCount,
  type TestPostgres,
} from '../helpers/postgres.js';
import { makeBatch } from '../helpers/records.js';
import { CONNECT_TIMEOUT_MS } from '../helpers/mqtt-client.js';
import { connectTelemetryDevice } from '../helpers/telemetry-device.js';
import { startTestBroker, type TestBroker } from '../helpers/test-broker.js';
import { timeoutFor } from '../helpers/wait.js';

const BRIDGE_ID = 'bridge';
/** a bridge process starting: tsx, PostgreSQL and MQTT connections, on a loaded machine */
const startup = { timeout: 20_000, interval: 25 };
/** one step on loopback: a message, a lock wait, a disconnect seen by the broker or PostgreSQL */
const poll = { timeout: 10_000, interval: 25 };

let postgres: TestPostgres;
let db: Database;
let broker: TestBroker;
const brokerLog: string[] = [];

beforeAll(async () => {
  postgres = await startTestPostgres();
  db = await openTestDatabase(postgres, 'bridge-redelivery-test', { migrate: true });
  broker = await startTestBroker();
  broker.aedes.on('subscribe', (subscriptions, client) => {
    for (const s of subscriptions) brokerLog.push(`${client.id} subscribed ${s.topic}`);
  });
  broker.aedes.on('ack', (packet, client) => {
    // packet is undefined when aedes keeps no copy (clean-session clients such as the device)
    if (packet === undefined) brokerLog.push(`${client.id} puback for an unknown message id`);
    else if ('topic' in packet) brokerLog.push(`${client.id} puback ${packet.topic}`);
  });
  broker.aedes.on('clientDisconnect', (client) => brokerLog.push(`${client.id} disconnected`));
});

/** The bridge as its own process (bridge/main.ts), so that it can really crash. */
function spawnBridgeProcess() {
  return spawnEntryProcess('bridge/main.ts', {
    DATABASE_URL: postgres.connectionString,
    BROKER_URL: broker.url,
    BRIDGE_CLIENT_ID: BRIDGE_ID,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    LOG_LEVEL: 'info',
  });
}

async function bridgeBackends(clientId = BRIDGE_ID): Promise<Array<{ state: string; wait_event_type: string | null }>> {
  return db.any('SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = $1', [clientId]);
}

const startBridge = (clientId: string): Promise<RunningBridge> =>
  startBridgeService({ databaseUrl: postgres.connectionString, brokerUrl: broker.url, clientId, dbPoolSize: 2 });

describe('deferred PUBACK', () => {
  it(
    'a message in flight when the bridge is killed is redelivered to the next bridge and committed once',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, startup.timeout, 5 * poll.timeout) },
    async () => {
      const device = await connectTelemetryDevice(broker.url);
      const batch = makeBatch();
      const first = spawnBridgeProcess();
      try {
        await expect
          .poll(() => brokerLog.includes(`${BRIDGE_ID} subscribed ${ALL_TELEMETRY_FILTER}`), startup)
          .toBe(true);

        // hold the table so that the bridge's transaction cannot get past its INSERT
        const lock = await lockTable(db, 'telemetry_data');
        await device.send(batch);
        await expect
          .poll(async () => (await bridgeBackends()).some((b) => b.wait_event_type === 'Lock'), poll)
          .toBe(true);

        expect(brokerLog.filter((line) => line.startsWith(`${BRIDGE_ID} puback`))).toEqual([]);
        first.kill('SIGKILL');
        await expect.poll(() => brokerLog.includes(`${BRIDGE_ID} disconnected`), poll).toBe(true);

        // the killed bridge's transaction never commits: PostgreSQL aborts it once its client is gone
        await lock.rollback();
        await expect.poll(async () => (await bridgeBackends()).length, poll).toBe(0);
        expect(await storedRowCount(db, device.id)).toBe(0);
        expect(device.acks).toEqual([]);

        await startBridge(BRIDGE_ID);

        await expect.poll(() => device.acks.length, poll).toBe(1);
        expect(device.acks[0]).toEqual({ batchId: batch.batchId, accepted: 1, rejected: [], conflicts: 0 });
        expect(await storedRowCount(db, device.id)).toBe(1);
        await expect
          .poll(() => brokerLog.filter((line) => line.startsWith(`${BRIDGE_ID} puback`)), poll)
          .toEqual([`${BRIDGE_ID} puback ${topics.telemetry(device.id)}`]);
      } catch (error) {
        throw new Error(`${(error as Error).message}\n--- first bridge output ---\n${first.output()}`, {
          cause: error,
        });
      }
    },
  );

  it(
    'never sends a PUBACK for a delivery of an earlier connection',
    { timeout: timeoutFor(CONNECT_TIMEOUT_MS, 5 * poll.timeout) },
    async () => {
      const clientId = 'bridge-reconnecting';
      const device = await connectTelemetryDevice(broker.url);
      const batch = makeBatch();
      const bridge = await startBridge(clientId);
      const lock = await lockTable(db, 'telemetry_data');
      await device.send(batch);
      await expect
        .poll(async () => (await bridgeBackends(clientId)).some((b) => b.wait_event_type === 'Lock'), poll)
        .toBe(true);

      // cut the bridge's connection while the message is in its transaction; it reconnects and
      // the broker delivers the message again on the new connection
      broker.dropConnection(clientId);
      await expect.poll(() => brokerLog.filter((line) => line === `${clientId} disconnected`).length, poll).toBe(1);
      await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(2);

      await lock.commit();
      // first delivery: committed, but its connection is gone, so no PUBACK; the redelivered copy
      // is a duplicate and is confirmed on the current connection
      await expect.poll(() => device.acks.length, poll).toBe(2);
      await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(0);
      expect(device.acks.every((ack) => ack.batchId === batch.batchId && ack.accepted === 1)).toBe(true);
      // the PUBACK follows the sync/ack's own PUBACK: it reaches the broker a moment after the ack
      await expect
        .poll(() => brokerLog.filter((line) => line.startsWith(`${clientId} puback`)), poll)
        .toEqual([`${clientId} puback ${topics.telemetry(device.id)}`]);
      // and no second one comes for the first connection's delivery
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(brokerLog.filter((line) => line.startsWith(`${clientId} puback`))).toHaveLength(1);
      expect(await storedRowCount(db, device.id)).toBe(1);
    },
  );
});
