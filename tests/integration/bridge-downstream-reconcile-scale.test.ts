/**
 * G6 at fleet size: the reconciler (bridge/downstream/reconciler.ts) publishes the retained
 * command and config topics of 5,000 devices from the database, finds nothing to repair on the
 * next run, and heals a broker restarted with an empty retained store by itself, paced at
 * RECONCILE_PUBLISH_RATE. Prints the durations (docs/operations.md quotes them).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import type { RunningBridge } from '../../bridge/service.js';
import { downstreamBridgeConfig, startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { connectClient } from '../helpers/mqtt-client.js';
import { collectMessages } from '../helpers/mqtt-observe.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICES = 5000;
const RATE = 2000;
const poll = { timeout: 60_000, interval: 100 };

let certs: TestCertificates;
let db: Database;
let broker: TestTlsBroker;
let bridge: RunningBridge;

beforeAll(async () => {
  const [generated, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [], serviceNames: ['bridge'], observerNames: ['explorer'] }),
    startTestPostgres(),
  ]);
  certs = generated;
  db = await openTestDatabase(postgres, 'bridge-downstream-scale-test');
  broker = await startTlsBroker({ tls: certs.broker });
  bridge = await startBridgeService(
    downstreamBridgeConfig({
      databaseUrl: postgres.connectionString,
      brokerUrl: broker.url,
      certs,
      downstream: { pollMs: 500, expirySweepMs: 1000, reconcilePublishRate: RATE },
    }),
  );
  // a fleet written straight into the database (as by other instances, long before this bridge)
  await db.none(
    `INSERT INTO devices (device_id, device_name, device_type)
     SELECT gen_random_uuid(), 'fleet-' || n, 'edge' FROM generate_series(1, $1) AS n`,
    [DEVICES],
  );
  await db.none(
    `INSERT INTO commands (command_id, device_id, command_type, payload, status, expires_at, updated_at)
     SELECT gen_random_uuid(), device_id, 'sync-now', '{}', 'pending', now() + interval '1 hour', now() - interval '1 hour'
     FROM devices`,
  );
  await db.none(
    `INSERT INTO device_configs (device_id, config_key, config_value, version, updated_at)
     SELECT device_id, 'agent.logLevel', '"info"', 1, now() - interval '1 hour' FROM devices`,
  );
});

async function retainedCount(): Promise<number> {
  const observer = await connectClient(broker.url, { ...certs.observers.explorer!, clientId: 'explorer', clean: true });
  const seen = collectMessages(observer);
  await observer.subscribeAsync('devices/+/commands/+', { qos: 1 });
  await observer.subscribeAsync('devices/+/config/+', { qos: 1 });
  let last = -1;
  // the retained stream has ended when the count stops growing between two polls
  await expect
    .poll(
      () => {
        const settled = seen.length === last && seen.length > 0;
        last = seen.length;
        return settled;
      },
      { timeout: 60_000, interval: 1000 },
    )
    .toBe(true);
  await observer.endAsync();
  return seen.filter((message) => message.retain).length;
}

describe('reconciliation at fleet size', () => {
  it(
    "publishes 5,000 devices' commands and config, then finds nothing to repair, and heals a lost retained store",
    { timeout: 300_000 },
    async () => {
      let started = Date.now();
      const first = await bridge.downstream.reconcile();
      const firstMs = Date.now() - started;
      expect(first).toMatchObject({ desired: 2 * DEVICES, published: 2 * DEVICES, cleared: 0 });
      expect(await retainedCount()).toBe(2 * DEVICES);

      started = Date.now();
      const steady = await bridge.downstream.reconcile();
      const steadyMs = Date.now() - started;
      expect(steady).toMatchObject({ retained: 2 * DEVICES, published: 0, cleared: 0 });

      const port = broker.port;
      await broker.close();
      broker = await startTlsBroker({ tls: certs.broker, port });
      started = Date.now();
      // the bridge reconnects without a session and reconciles by itself
      await expect
        .poll(
          async () => (await bridge.metrics.reconcileRepairs.get()).values.reduce((sum, v) => sum + v.value, 0),
          poll,
        )
        .toBe(4 * DEVICES);
      const healMs = Date.now() - started;
      expect(await retainedCount()).toBe(2 * DEVICES);
      console.info(
        `${2 * DEVICES} retained topics: first reconciliation ${firstMs} ms, steady-state run ${steadyMs} ms, ` +
          `healed after a broker restart in ${healMs} ms (RECONCILE_PUBLISH_RATE=${RATE})`,
      );
    },
  );
});
