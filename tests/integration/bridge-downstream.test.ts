/**
 * G6 through the real path: the mutual-TLS broker with its ACL, the bridge service with its
 * downstream side, PostgreSQL at SERIALIZABLE, and test devices that speak the contract with their
 * device certificates (tests/helpers/downstream-device.ts): commands from creation to the cleared
 * topic, forward-only reports, refusals, expiry while offline, cancel, config versions and
 * reports, presence, polling for rows another instance wrote, and healing a lost retained store.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { DownstreamError } from '../../bridge/downstream/errors.js';
import type { RunningBridge } from '../../bridge/service.js';
import { topics } from '../../schemas/topics.js';
import { downstreamBridgeConfig, startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { connectDownstreamDevice, type DownstreamDevice } from '../helpers/downstream-device.js';
import { closed, connectClient } from '../helpers/mqtt-client.js';
import { lockTable, openTestDatabase, startTestPostgres, storedCommand, storedRowCount } from '../helpers/postgres.js';
import { makeBatch } from '../helpers/records.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';

const DEVICE = '3b0f6c1e-8a2d-4e7f-9b1c-2d3e4f5a6b7c';
const OTHER = '9c8d7e6f-5a4b-4c3d-8e2f-1a0b9c8d7e6f';
const OFFLINE = '1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b';
const INTRUDER = '5f4e3d2c-1b0a-4987-8a6b-5c4d3e2f1a00';
const poll = { timeout: 15_000, interval: 25 };

let certs: TestCertificates;
let db: Database;
let broker: TestTlsBroker;
let bridge: RunningBridge;
let device: DownstreamDevice;

async function registerDevice(deviceId: string): Promise<void> {
  await db.none(
    `INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, $1, 'edge') ON CONFLICT (device_id) DO NOTHING`,
    [deviceId],
  );
}

const row = (commandId: string) => storedCommand(db, commandId);

const rejected = async (kind: string, reason: string): Promise<number> =>
  (await bridge.metrics.downstreamReportsRejected.get()).values
    .filter((value) => value.labels.kind === kind && value.labels.reason === reason)
    .reduce((sum, value) => sum + value.value, 0);

beforeAll(async () => {
  const [generated, postgres] = await Promise.all([
    createTestCertificates({
      deviceIds: [DEVICE, OTHER, OFFLINE, INTRUDER],
      serviceNames: ['bridge'],
      observerNames: ['explorer'],
    }),
    startTestPostgres(),
  ]);
  certs = generated;
  db = await openTestDatabase(postgres, 'bridge-downstream-test');
  broker = await startTlsBroker({ tls: certs.broker });
  bridge = await startBridgeService(
    downstreamBridgeConfig({ databaseUrl: postgres.connectionString, brokerUrl: broker.url, certs }),
  );
  await Promise.all([DEVICE, OTHER, OFFLINE].map(registerDevice));
  device = await connectDownstreamDevice(broker.url, DEVICE, certs.devices[DEVICE]!);
});

describe('a command, from creation to its cleared topic', () => {
  it('is published retained as pending, moves forward with each report, stores every timestamp and is cleared when executed', async () => {
    const created = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    expect(created).toMatchObject({ deviceId: DEVICE, type: 'ping', status: 'pending', deliveredAt: null });
    expect(Date.parse(created.expiresAt!) - Date.parse(created.createdAt)).toBe(3_600_000);
    await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('pending');

    const t0 = Date.now();
    await device.reportCommand(created.commandId, { status: 'delivered', at: new Date(t0).toISOString() });
    await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('delivered');
    await device.reportCommand(created.commandId, { status: 'executing', at: new Date(t0 + 1).toISOString() });
    await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('executing');
    await device.reportCommand(created.commandId, {
      status: 'executed',
      at: new Date(t0 + 2).toISOString(),
      result: { pong: true, at: new Date(t0 + 2).toISOString() },
    });
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(false);

    const stored = await row(created.commandId);
    expect(stored).toMatchObject({ status: 'executed', result: { pong: true } });
    expect(stored.delivered_at?.getTime()).toBe(t0);
    expect(stored.started_at?.getTime()).toBe(t0 + 1);
    expect(stored.finished_at?.getTime()).toBe(t0 + 2);
    expect(stored.executed_at?.getTime()).toBe(t0 + 2);
    expect(device.on(topics.command(DEVICE, created.commandId)).at(-1)).toBe('');
  });

  it('fills the timestamps of skipped steps when the first report is already terminal', async () => {
    const created = await bridge.downstream.commands.create({
      deviceId: DEVICE,
      type: 'custom.job',
      payload: { n: 1 },
    });
    const at = new Date().toISOString();
    await device.reportCommand(created.commandId, { status: 'failed', at, error: 'disk full' });
    await expect.poll(async () => (await row(created.commandId)).status, poll).toBe('failed');
    const stored = await row(created.commandId);
    expect(stored).toMatchObject({ error: 'disk full', executed_at: null });
    expect([stored.delivered_at, stored.started_at, stored.finished_at].map((d) => d?.toISOString())).toEqual([
      at,
      at,
      at,
    ]);
  });
});

describe('reports only move a command forward', () => {
  it('ignores a duplicate and a late report, keeps the newer state, and answers each with the current truth', async () => {
    const created = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'sync-now', payload: {} });
    const topic = topics.command(DEVICE, created.commandId);
    const at = new Date().toISOString();
    await device.reportCommand(created.commandId, { status: 'executing', at });
    await expect.poll(() => device.commands().get(created.commandId)?.status, poll).toBe('executing');
    const before = device.on(topic).length;

    await device.reportCommand(created.commandId, { status: 'delivered', at }); // late
    await device.reportCommand(created.commandId, { status: 'executing', at }); // duplicate
    // each is answered by re-publishing the retained truth: still executing
    await expect.poll(() => device.on(topic).length, poll).toBeGreaterThanOrEqual(before + 2);
    expect(
      device
        .on(topic)
        .slice(before)
        .map((payload) => (JSON.parse(payload) as { status: string }).status),
    ).toEqual(['executing', 'executing']);
    expect((await row(created.commandId)).status).toBe('executing');

    const late = await bridge.downstream.commands.report(DEVICE, created.commandId, { status: 'delivered', at });
    expect(late).toMatchObject({ applied: false, ignored: 'late', command: { status: 'executing' } });
    const done = await bridge.downstream.commands.report(DEVICE, created.commandId, {
      status: 'executed',
      at,
      result: 1,
    });
    expect(done).toMatchObject({ applied: true, command: { status: 'executed', result: 1 } });
    const again = await bridge.downstream.commands.report(DEVICE, created.commandId, {
      status: 'failed',
      at,
      error: 'x',
    });
    expect(again).toMatchObject({ applied: false, command: { status: 'executed', error: null } });
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(false);
  });

  it("refuses a result for an unknown command or another device's command, answers with a clear, and goes on", async () => {
    const unknown = '00000000-0000-4000-8000-000000000001';
    const before = await rejected('command-result', 'unknown-command');
    await device.reportCommand(unknown, { status: 'executed', at: new Date().toISOString() });
    await expect.poll(() => device.on(topics.command(DEVICE, unknown)), poll).toEqual(['']);
    expect(await rejected('command-result', 'unknown-command')).toBe(before + 1);

    const others = await bridge.downstream.commands.create({ deviceId: OTHER, type: 'ping', payload: {} });
    await expect(
      bridge.downstream.commands.report(DEVICE, others.commandId, { status: 'executed', at: new Date().toISOString() }),
    ).rejects.toMatchObject({ code: 'not-found', httpStatus: 404 });
    await device.reportCommand(others.commandId, { status: 'executed', at: new Date().toISOString() });
    await expect.poll(() => rejected('command-result', 'unknown-command'), poll).toBe(before + 2);
    expect((await row(others.commandId)).status).toBe('pending');

    // an invalid payload is refused and counted; the next report is handled
    const invalidBefore = await rejected('command-result', 'invalid-payload');
    await device.client.publishAsync(topics.commandResult(DEVICE, others.commandId), '{"status":"done"}', { qos: 1 });
    const next = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    await device.reportCommand(next.commandId, { status: 'delivered', at: new Date().toISOString() });
    await expect.poll(async () => (await row(next.commandId)).status, poll).toBe('delivered');
    expect(await rejected('command-result', 'invalid-payload')).toBe(invalidBefore + 1);
  });

  it("never lets a device publish on another device's topics (the broker's ACL closes its connection)", async () => {
    const others = await bridge.downstream.commands.create({ deviceId: OTHER, type: 'ping', payload: {} });
    const intruder = await connectClient(broker.url, { ...certs.devices[INTRUDER]!, clientId: INTRUDER, clean: true });
    intruder.publish(
      topics.commandResult(OTHER, others.commandId),
      JSON.stringify({ status: 'executed', at: new Date().toISOString() }),
      { qos: 1 },
    );
    await closed(intruder, 10_000);
    expect((await row(others.commandId)).status).toBe('pending');
  });
});

describe('reports and telemetry', () => {
  it('applies a command report while a telemetry batch of the same device waits on a locked table', async () => {
    const created = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    const lock = await lockTable(db, 'telemetry_data');
    const batch = makeBatch();
    await device.client.publishAsync(topics.telemetry(DEVICE), JSON.stringify(batch), { qos: 1 });
    await expect.poll(async () => (await bridge.metrics.messagesInFlight.get()).values[0]?.value, poll).toBe(1);

    await device.reportCommand(created.commandId, { status: 'executed', at: new Date().toISOString(), result: {} });
    await expect.poll(async () => (await row(created.commandId)).status, poll).toBe('executed');
    await expect.poll(() => device.commands().has(created.commandId), poll).toBe(false);
    expect(await storedRowCount(db, DEVICE)).toBe(0); // the telemetry batch is still waiting

    await lock.commit();
    await expect.poll(() => storedRowCount(db, DEVICE), poll).toBe(1);
  });
});

describe('expiry and cancel', () => {
  it('expires a command while its device is offline; the device never sees it when it comes back, but gets the live one', async () => {
    const expiring = await bridge.downstream.commands.create({
      deviceId: OFFLINE,
      type: 'ping',
      payload: {},
      expiresAt: new Date(Date.now() + 1500).toISOString(),
    });
    const live = await bridge.downstream.commands.create({ deviceId: OFFLINE, type: 'sync-now', payload: {} });
    await expect.poll(async () => (await row(expiring.commandId)).status, poll).toBe('expired');
    expect((await row(expiring.commandId)).error).toMatch(/expiresAt/);

    const back = await connectDownstreamDevice(broker.url, OFFLINE, certs.devices[OFFLINE]!);
    await expect.poll(() => back.commands().get(live.commandId)?.status, poll).toBe('pending');
    expect(back.on(topics.command(OFFLINE, expiring.commandId))).toEqual([]);
    expect((await bridge.downstream.commands.liveForDevice(OFFLINE)).map((c) => c.commandId)).toEqual([live.commandId]);
    await back.close();
  });

  it('cancels a command before execution and says it is too late once the device started it', async () => {
    const early = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    await device.reportCommand(early.commandId, { status: 'delivered', at: new Date().toISOString() });
    await expect.poll(async () => (await row(early.commandId)).status, poll).toBe('delivered');
    const canceled = await bridge.downstream.commands.cancel(early.commandId);
    expect(canceled).toMatchObject({ status: 'canceled', canceledAt: expect.any(String) as string });
    await expect.poll(() => device.commands().has(early.commandId), poll).toBe(false);
    // the device's executing report after the cancel changes nothing
    await device.reportCommand(early.commandId, { status: 'executing', at: new Date().toISOString() });
    await expect
      .poll(() => device.on(topics.command(DEVICE, early.commandId)).filter((p) => p === '').length, poll)
      .toBeGreaterThanOrEqual(2);
    expect((await row(early.commandId)).status).toBe('canceled');

    const started = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
    await device.reportCommand(started.commandId, { status: 'executing', at: new Date().toISOString() });
    await expect.poll(async () => (await row(started.commandId)).status, poll).toBe('executing');
    const tooLate = await bridge.downstream.commands.cancel(started.commandId).catch((error: unknown) => error);
    expect(tooLate).toBeInstanceOf(DownstreamError);
    expect(tooLate).toMatchObject({
      code: 'conflict',
      httpStatus: 409,
      details: { status: 'executing' },
      message: expect.stringMatching(/too late/) as string,
    });
  });

  it('refuses bad input with a clear error: unknown device, invalid type or payload, an expiry in the past', async () => {
    await expect(
      bridge.downstream.commands.create({
        deviceId: '4a4a4a4a-4a4a-4a4a-8a4a-4a4a4a4a4a4a',
        type: 'ping',
        payload: {},
      }),
    ).rejects.toMatchObject({ code: 'device-not-found', httpStatus: 404 });
    await expect(
      bridge.downstream.commands.create({ deviceId: DEVICE, type: 'Bad Type', payload: {} }),
    ).rejects.toMatchObject({ code: 'invalid', httpStatus: 400 });
    await expect(
      bridge.downstream.commands.create({
        deviceId: DEVICE,
        type: 'set-setting',
        payload: { key: 'agent.logLevel', value: 'loud' },
      }),
    ).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/set-setting/) as string });
    await expect(
      bridge.downstream.commands.create({
        deviceId: DEVICE,
        type: 'ping',
        payload: {},
        expiresAt: '2001-01-01T00:00:00Z',
      }),
    ).rejects.toMatchObject({ code: 'invalid' });
    await expect(bridge.downstream.commands.cancel('00000000-0000-4000-8000-000000000002')).rejects.toMatchObject({
      code: 'not-found',
    });
  });

  it('lists commands newest first with an opaque cursor, filtered by device, status and type', async () => {
    const first = await bridge.downstream.commands.list({ deviceId: OFFLINE, limit: 1 });
    expect(first.items).toHaveLength(1);
    expect(first.next).not.toBeNull();
    const second = await bridge.downstream.commands.list({ deviceId: OFFLINE, limit: 5, after: first.next! });
    expect([...first.items, ...second.items].map((c) => c.type)).toEqual(['sync-now', 'ping']);
    expect(second.next).toBeNull();
    expect(
      (await bridge.downstream.commands.list({ status: 'expired', limit: 10 })).items.every(
        (c) => c.status === 'expired',
      ),
    ).toBe(true);
    await expect(bridge.downstream.commands.list({ limit: 10, after: 'garbage' })).rejects.toMatchObject({
      code: 'invalid',
    });
  });
});

describe('device config', () => {
  it('increments the version with each write, refuses a stale expected version with a conflict, and publishes {key, value, version}', async () => {
    const v1 = await bridge.downstream.config.set(DEVICE, 'agent.syncIntervalMs', 5000, { expectedVersion: 0 });
    expect(v1).toMatchObject({ key: 'agent.syncIntervalMs', value: 5000, version: 1, reportedVersion: null });
    const v2 = await bridge.downstream.config.set(DEVICE, 'agent.syncIntervalMs', 6000, { expectedVersion: 1 });
    expect(v2.version).toBe(2);
    await expect(
      bridge.downstream.config.set(DEVICE, 'agent.syncIntervalMs', 7000, { expectedVersion: 1 }),
    ).rejects.toMatchObject({ code: 'conflict', httpStatus: 409, details: { version: 2 } });
    await expect(bridge.downstream.config.set(DEVICE, 'agent.syncIntervalMs', 5)).rejects.toMatchObject({
      code: 'invalid',
    });
    await expect(bridge.downstream.config.set(DEVICE, 'reported', 1)).rejects.toMatchObject({ code: 'invalid' });
    await expect
      .poll(() => device.config().get('agent.syncIntervalMs'), poll)
      .toEqual({ key: 'agent.syncIntervalMs', value: 6000, version: 2 });
  });

  it('records the reported version next to the desired one, confirms it in the retained message, and never lets an older report overwrite it', async () => {
    const key = 'app.mode';
    await bridge.downstream.config.set(DEVICE, key, 'eco');
    await bridge.downstream.config.set(DEVICE, key, 'fast');
    await device.reportConfig({ key, version: 2, status: 'applied', at: new Date().toISOString() });
    await expect
      .poll(() => device.config().get(key), poll)
      .toEqual({ key, value: 'fast', version: 2, reportedVersion: 2 });

    const olderBefore = await rejected('config-reported', 'older-version');
    await device.reportConfig({ key, version: 1, status: 'rejected', error: 'old' });
    await expect.poll(() => rejected('config-reported', 'older-version'), poll).toBe(olderBefore + 1);
    expect(await bridge.downstream.config.get(DEVICE, key)).toMatchObject({
      version: 2,
      reportedVersion: 2,
      reportedStatus: 'applied',
      reportedError: null,
    });

    // a version ahead of the desired one is refused
    await expect(bridge.downstream.config.report(DEVICE, { key, version: 9, status: 'applied' })).rejects.toMatchObject(
      { code: 'invalid' },
    );
  });

  it('answers "which devices have not applied the current version" with one query, paged', async () => {
    await bridge.downstream.config.set(OTHER, 'app.mode', 'fast');
    await bridge.downstream.config.set(OFFLINE, 'app.mode', 'fast');
    const lagging = await bridge.downstream.config.lagging({ key: 'app.mode', limit: 1 });
    expect(lagging.items).toHaveLength(1);
    const rest = await bridge.downstream.config.lagging({ key: 'app.mode', limit: 10, after: lagging.next! });
    expect([...lagging.items, ...rest.items].map((c) => c.deviceId).sort()).toEqual([OTHER, OFFLINE].sort());
    expect(rest.next).toBeNull();
  });

  it('clears the topic of a deleted key and continues its version when it is set again', async () => {
    const key = 'app.deleted';
    await bridge.downstream.config.set(DEVICE, key, { a: 1 });
    await expect.poll(() => device.config().has(key), poll).toBe(true);
    await expect(bridge.downstream.config.delete(DEVICE, key, { expectedVersion: 3 })).rejects.toMatchObject({
      code: 'conflict',
    });
    await bridge.downstream.config.delete(DEVICE, key);
    await expect.poll(() => device.config().has(key), poll).toBe(false);
    expect(await bridge.downstream.config.get(DEVICE, key)).toBeNull();
    await expect(bridge.downstream.config.delete(DEVICE, key)).rejects.toMatchObject({ code: 'not-found' });
    expect((await bridge.downstream.config.set(DEVICE, key, { a: 2 }, { expectedVersion: 0 })).version).toBe(2);
  });
});

describe('presence', () => {
  it('keeps devices.status by the later `at`, so a late will never overwrites a newer online', async () => {
    const status = () =>
      db.one<{ status: string; status_at: Date }>('SELECT status, status_at FROM devices WHERE device_id = $1', [
        OTHER,
      ]);
    const other = await connectClient(broker.url, { ...certs.devices[OTHER]!, clientId: OTHER, clean: true });
    const t = Date.now();
    await other.publishAsync(topics.status(OTHER), JSON.stringify({ online: true, at: new Date(t).toISOString() }), {
      qos: 1,
      retain: true,
    });
    await expect.poll(async () => (await status()).status, poll).toBe('online');
    await other.publishAsync(
      topics.status(OTHER),
      JSON.stringify({ online: false, at: new Date(t - 60_000).toISOString() }),
      { qos: 1, retain: true },
    );
    await other.publishAsync(topics.status(OTHER), JSON.stringify({ online: true, at: new Date(t).toISOString() }), {
      qos: 1,
      retain: true,
    });
    await expect
      .poll(
        async () =>
          (await bridge.metrics.downstreamReports.get()).values
            .filter((v) => v.labels.kind === 'status' && v.labels.outcome === 'late')
            .reduce((s, v) => s + v.value, 0),
        poll,
      )
      .toBeGreaterThanOrEqual(2);
    expect(await status()).toMatchObject({ status: 'online', status_at: new Date(t) });
    await other.publishAsync(topics.status(OTHER), JSON.stringify({ online: false, at: new Date(t).toISOString() }), {
      qos: 1,
      retain: true,
    });
    await expect.poll(async () => (await status()).status, poll).toBe('offline');
    await other.endAsync();
  });
});

describe('the database is the truth, the retained store a cache', () => {
  it('publishes a command another instance committed but never published, within about a second', async () => {
    const commandId = '7d6c5b4a-3928-4716-8a5b-4c3d2e1f0a9b';
    const started = Date.now();
    await db.none(
      `INSERT INTO commands (command_id, device_id, command_type, payload, status, expires_at)
       VALUES ($1, $2, 'ping', '{}', 'pending', now() + interval '1 hour')`,
      [commandId, DEVICE],
    );
    await expect.poll(() => device.commands().get(commandId)?.status, poll).toBe('pending');
    const elapsed = Date.now() - started;
    console.info(`a command written by another instance reached the device after ${elapsed} ms`);
  });

  it('heals a broker restarted with an empty retained store: every live command and current config is retained again, nothing else', async () => {
    const live = await bridge.downstream.commands.create({ deviceId: OTHER, type: 'sync-now', payload: {} });
    await bridge.downstream.config.set(OTHER, 'app.heal', 42);
    const port = broker.port;
    await device.close();
    await broker.close();
    broker = await startTlsBroker({ tls: certs.broker, port });
    const other = await connectDownstreamDevice(broker.url, OTHER, certs.devices[OTHER]!, { reconnectPeriod: 0 });
    await expect.poll(() => other.commands().get(live.commandId)?.status, { ...poll, timeout: 30_000 }).toBe('pending');
    await expect.poll(() => other.config().get('app.heal')?.value, { ...poll, timeout: 30_000 }).toBe(42);
    const liveIds = (await bridge.downstream.commands.liveForDevice(OTHER)).map((c) => c.commandId).sort();
    await expect.poll(() => [...other.commands().keys()].sort(), poll).toEqual(liveIds);

    // the bridge subscribed again after the lost session (one filter per SUBSCRIBE): reports work
    await other.reportCommand(live.commandId, { status: 'delivered', at: new Date().toISOString() });
    await expect.poll(async () => (await row(live.commandId)).status, poll).toBe('delivered');

    // a retained command the database no longer has live (changed behind the poller's back) is
    // cleared by the next reconciliation
    const stale = await bridge.downstream.commands.create({ deviceId: OTHER, type: 'ping', payload: {} });
    await expect.poll(() => other.commands().has(stale.commandId), poll).toBe(true);
    await db.none(
      `UPDATE commands SET status = 'canceled', updated_at = now() - interval '1 hour' WHERE command_id = $1`,
      [stale.commandId],
    );
    const result = await bridge.downstream.reconcile();
    expect(result).toMatchObject({ cleared: 1, published: 0 });
    await expect.poll(() => other.commands().has(stale.commandId), poll).toBe(false);
    await other.close();
  });
});
