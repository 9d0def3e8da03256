/**
 * The bridge against a Redis-backed broker node (cluster mode: mqemitter-redis 7.2.1 +
 * aedes-persistence-redis 11.2.2), where its persistent session's subscriptions live in Redis.
 *
 * Pins the upstream hazard bridge/mqtt/bridge-mqtt-client.ts works around: on a clean:false
 * session, ONE SUBSCRIBE packet with several filters gets no SUBACK (one filter per packet does;
 * cf. aedes issue #602), so a bridge subscribing to its four filters at once hung at start-up.
 * If the first test starts failing, upstream fixed it and the workaround may go.
 */
import type { MqttClient } from 'mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createRedisBackends } from '../../broker/cluster-backends.js';
import { BRIDGE_DEFAULTS } from '../../bridge/config.js';
import { BRIDGE_SUBSCRIPTIONS } from '../../bridge/mqtt/bridge-mqtt-client.js';
import type { Database } from '../../bridge/db/connection.js';
import { topics } from '../../schemas/topics.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { connectDownstreamDevice } from '../helpers/downstream-device.js';
import { connectClient } from '../helpers/mqtt-client.js';
import { openTestDatabase, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';
import { testLogger } from '../helpers/logger.js';

const DEVICE = '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d';
const poll = { timeout: 20_000, interval: 25 };
/** how long a SUBACK may take on the loaded test machine before it counts as never coming */
const SUBACK_WAIT_MS = 5_000;

let certs: TestCertificates;
let redis: TestRedis;
let broker: TestTlsBroker;
let postgres: TestPostgres;
let db: Database;

beforeAll(async () => {
  [certs, redis, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge', 'probe'] }),
    startTestRedis(),
    startTestPostgres(),
  ]);
  const logger = testLogger('broker');
  broker = await startTlsBroker({ tls: certs.broker, logger, backends: await createRedisBackends(redis.url, logger) });
  db = await openTestDatabase(postgres, 'bridge-redis-subscribe-test');
});

/** Resolves with the SUBACK's granted codes, or 'no SUBACK' after `ms`. */
function subackWithin(client: MqttClient, filters: string[], ms: number): Promise<number[] | 'no SUBACK'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no SUBACK'), ms);
    client.subscribe(filters, { qos: 1 }, (_error, granted) => {
      clearTimeout(timer);
      resolve((granted ?? []).map((grant) => grant.qos));
    });
  });
}

describe('aedes-persistence-redis 11.2.2 and multi-filter SUBSCRIBE on a persistent session', () => {
  it('answers one filter per SUBSCRIBE, and never answers one SUBSCRIBE carrying several filters', async () => {
    const probe = await connectClient(broker.url, { ...certs.services.probe!, clientId: 'probe', clean: false });
    expect(await subackWithin(probe, [BRIDGE_SUBSCRIPTIONS[0]!], SUBACK_WAIT_MS)).toEqual([1]);
    expect(await subackWithin(probe, [...BRIDGE_SUBSCRIPTIONS.slice(1)], SUBACK_WAIT_MS)).toBe('no SUBACK');
    await probe.endAsync(true);
  });
});

describe('the bridge on a Redis-backed broker', () => {
  it('starts (one filter per SUBSCRIBE), restarts on its stored session, handles reports, and heals a flushed Redis', async () => {
    const config = {
      databaseUrl: postgres.connectionString,
      brokerUrl: broker.url,
      tls: certs.services.bridge!,
      clientId: 'bridge',
      dbPoolSize: 4,
      downstream: { ...BRIDGE_DEFAULTS.downstream, reconcileIntervalMs: 2000 },
    };
    const first = await startBridgeService(config);
    await first.close();
    const bridge = await startBridgeService(config); // session present this time
    await db.none(
      `INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, $1, 'edge') ON CONFLICT DO NOTHING`,
      [DEVICE],
    );
    const device = await connectDownstreamDevice(broker.url, DEVICE, certs.devices[DEVICE]!);
    const command = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    await expect.poll(() => device.commands().get(command.commandId)?.status, poll).toBe('pending');
    await device.reportCommand(command.commandId, { status: 'executed', at: new Date().toISOString(), result: {} });
    await expect.poll(() => device.on(topics.command(DEVICE, command.commandId)).at(-1), poll).toBe('');
    expect((await bridge.downstream.commands.get(command.commandId))?.status).toBe('executed');

    // Redis flushed: the retained store is gone; the periodic reconciliation restores it
    const live = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'sync-now', payload: {} });
    await expect.poll(() => device.commands().has(live.commandId), poll).toBe(true);
    const client = new Redis(redis.url);
    await client.flushall();
    client.disconnect();
    const fresh = await connectDownstreamDevice(broker.url, DEVICE, certs.devices[DEVICE]!);
    await expect.poll(() => fresh.commands().get(live.commandId)?.status, poll).toBe('pending');
    // …put back by a reconciliation, not left over in the broker
    const repairs = await bridge.metrics.reconcileRepairs.get();
    expect(
      repairs.values.find((v) => v.labels.kind === 'command' && v.labels.action === 'publish')?.value,
    ).toBeGreaterThan(0);
  });
});
