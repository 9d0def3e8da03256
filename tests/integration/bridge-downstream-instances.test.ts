/**
 * G6 with several control-plane instances on one database and one broker: no LISTEN/NOTIFY, so a
 * command committed by an instance that died before publishing it is published by the other
 * bridges' change pollers (bridge/downstream/change-poller.ts) within about a second; two
 * bridges handling the same report and sweeping the same expired command stay consistent.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { CommandService } from '../../bridge/downstream/command-service.js';
import { RetainedPublisher } from '../../bridge/downstream/retained-publisher.js';
import type { RunningBridge } from '../../bridge/service.js';
import { topics } from '../../schemas/topics.js';
import { startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { connectDownstreamDevice, type DownstreamDevice } from '../helpers/downstream-device.js';
import { testLogger } from '../helpers/logger.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICE = '8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5968';
const POLL_MS = 250;
const poll = { timeout: 15_000, interval: 10 };

let certs: TestCertificates;
let db: Database;
let broker: TestTlsBroker;
let bridgeA: RunningBridge;
let bridgeB: RunningBridge;
let device: DownstreamDevice;

beforeAll(async () => {
  const [generated, postgres] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge-a', 'bridge-b'] }),
    startTestPostgres(),
  ]);
  certs = generated;
  db = await openTestDatabase(postgres, 'bridge-downstream-instances-test');
  broker = await startTlsBroker({ tls: certs.broker });
  const start = (clientId: string) =>
    startBridgeService({
      databaseUrl: postgres.connectionString,
      brokerUrl: broker.url,
      tls: certs.services[clientId]!,
      clientId,
      dbPoolSize: 4,
      downstream: {
        commandDefaultTtlMs: 3_600_000,
        pollMs: POLL_MS,
        expirySweepMs: 200,
        reconcileIntervalMs: 3_600_000,
        reconcilePublishRate: 500,
      },
    });
  [bridgeA, bridgeB] = await Promise.all([start('bridge-a'), start('bridge-b')]);
  await db.none(`INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, $1, 'edge')`, [DEVICE]);
  device = await connectDownstreamDevice(broker.url, DEVICE, certs.devices[DEVICE]!);
});

describe('several control-plane instances', () => {
  it('publishes a command whose creating instance died before publishing, within about a second', async () => {
    // an API instance that commits and never publishes (it died right after the commit)
    const dead = new CommandService({
      db,
      defaultTtlMs: 3_600_000,
      publisher: new RetainedPublisher({
        logger: testLogger('dead-instance'),
        publish: () => new Promise(() => undefined),
      }),
    });
    const latencies: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const created = await dead.create({ deviceId: DEVICE, type: 'ping', payload: {} });
      const committedAt = Date.now();
      await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('pending');
      latencies.push(Date.now() - committedAt);
    }
    console.info(`unpublished commands reached the device after ${latencies.join(', ')} ms (poll every ${POLL_MS} ms)`);
    // the median, not the maximum: the shared test machine can stall any single poll
    expect([...latencies].sort((a, b) => a - b)[2]!).toBeLessThan(1000);
  });

  it('applies a report once when both bridges receive it, and both confirm the same truth', async () => {
    const created = await bridgeA.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('pending');
    await device.reportCommand(created.commandId, {
      status: 'executed',
      at: new Date().toISOString(),
      result: { pong: true },
    });
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(false);
    const applied = async () =>
      (
        await Promise.all(
          [bridgeA, bridgeB].map(async (bridge) =>
            (await bridge.metrics.downstreamReports.get()).values
              .filter((v) => v.labels.kind === 'command-result')
              .map((v) => `${v.labels.outcome}=${v.value}`),
          ),
        )
      )
        .flat()
        .sort();
    await expect.poll(applied, poll).toEqual(['applied=1', 'duplicate=1']);
    expect((await bridgeB.downstream.commands.get(created.commandId))?.status).toBe('executed');
  });

  it('expires a command once when both bridges sweep, and clears its topic', async () => {
    const created = await bridgeB.downstream.commands.create({
      deviceId: DEVICE,
      type: 'ping',
      payload: {},
      expiresAt: new Date(Date.now() + 1000).toISOString(),
    });
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(true);
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(false);
    // a reconciliation running after expiresAt may clear the topic (a command past its expiresAt is
    // not live) a moment before a sweep marks the row expired
    await expect
      .poll(async () => (await bridgeA.downstream.commands.get(created.commandId))?.status, poll)
      .toBe('expired');
    const expired = async () =>
      (await bridgeA.metrics.commandsExpired.get()).values[0]!.value +
      (await bridgeB.metrics.commandsExpired.get()).values[0]!.value;
    // the sweep counts after its clear is published, so the device may see the clear first
    await expect.poll(expired, poll).toBe(1);
    expect(device.on(topics.command(DEVICE, created.commandId)).at(-1)).toBe('');
    expect(await expired()).toBe(1);
  });
});
