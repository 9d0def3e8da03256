/**
 * Authentication and permissions of the edge's sensor listener, with third-party clients
 * (mosquitto_pub/mosquitto_sub with -u/-P, paho-mqtt): users from a users file with scrypt hashes,
 * their roles and sensor ids, client certificates over TLS, the simulated sensors of
 * docker-compose logging in, and the refusal to start on a non-loopback address without any of it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../common/ids.js';
import { connectSensor, standardSensors } from '../../devtools/sensor-simulator.js';
import { hashPassword } from '../../edge/ingest/sensor-passwords.js';
import { parseSensorUsers, type SensorRole, type SensorUser } from '../../edge/ingest/sensor-users.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { startTestListener, type TestListener } from '../helpers/edge-listener.js';
import {
  mosquittoPub,
  mosquittoSub,
  pahoPub,
  pahoSub,
  type Credentials,
  type RunningSubscriber,
} from '../helpers/third-party-mqtt.js';

const PASSWORDS = { boiler: 'b0iler-secret', dashboard: 'dash-secret', ops: 'ops-secret', b1only: 'b1-secret' };
const boiler: Credentials = { username: 'boiler', password: PASSWORDS.boiler };
const dashboard: Credentials = { username: 'dashboard', password: PASSWORDS.dashboard };
const ops: Credentials = { username: 'ops', password: PASSWORDS.ops };
const b1only: Credentials = { username: 'b1only', password: PASSWORDS.b1only };

let users: SensorUser[];
const directory = mkdtempSync(join(tmpdir(), 'edge-sensor-auth-'));
let edge: TestListener | undefined;
const subscribers: RunningSubscriber[] = [];

async function user(name: keyof typeof PASSWORDS, role: SensorRole, sensors: SensorUser['sensors'] = 'any') {
  return { name, role, sensors, password: await hashPassword(PASSWORDS[name]) };
}

beforeAll(async () => {
  users = await Promise.all([
    user('boiler', 'publisher'),
    user('dashboard', 'reader'),
    user('ops', 'both'),
    user('b1only', 'publisher', ['b1']),
  ]);
});

afterEach(async () => {
  await Promise.all(subscribers.splice(0).map((subscriber) => subscriber.stop()));
  await edge?.close();
  edge = undefined;
});

afterAll(() => rmSync(directory, { recursive: true, force: true }));

function track(subscriber: RunningSubscriber): RunningSubscriber {
  subscribers.push(subscriber);
  return subscriber;
}

const reading = (id: string) => JSON.stringify({ value: 1.5, unit: 'bar', id });

describe('sensor listener with users', () => {
  it('refuses an anonymous client with CONNACK 5 (not authorized)', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    const anonymous = await mosquittoPub({ port, topic: 'sensors/b1/pressure', payload: reading(newId()) });
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/Connection Refused: not authori[sz]ed/);
    const paho = await pahoPub({ port, messages: [{ topic: 'sensors/b1/pressure', payload: '1' }] });
    expect(paho).toMatchObject({ code: 4, acknowledged: [] });
    expect(paho.events[0]).toEqual({ event: 'connack', rc: 5 });
    expect(await edge.storedIds()).toEqual([]);
    expect(await edge.metrics.sensorConnectionsRefused.get()).toMatchObject({
      values: [{ labels: { reason: 'no-credentials' }, value: 2 }],
    });
  });

  it('refuses a wrong password and an unknown user with CONNACK 4 (bad user name or password)', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    const wrong = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(newId()),
      credentials: { username: 'boiler', password: PASSWORDS.dashboard },
    });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/Connection Refused: bad user name or password/);
    const unknown = await pahoPub({
      port,
      credentials: { username: 'nobody', password: PASSWORDS.boiler },
      messages: [{ topic: 'sensors/b1/pressure', payload: '1' }],
    });
    expect(unknown.events[0]).toEqual({ event: 'connack', rc: 4 });
    expect(await edge.storedIds()).toEqual([]);
  });

  it('accepts the right password: the reading is stored and acknowledged', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    const id = newId();
    const published = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(id),
      credentials: boiler,
    });
    expect(published).toMatchObject({ code: 0, stderr: '' });
    const paho = await pahoPub({
      port,
      credentials: ops,
      messages: [{ topic: 'sensors/b2/pressure', payload: reading(newId()) }],
    });
    expect(paho).toMatchObject({ code: 0, acknowledged: [0] });
    expect(await edge.storedIds()).toContain(id);
    expect(await edge.storedIds()).toHaveLength(2);
  });

  it('a publisher cannot subscribe: SUBACK 128', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    expect(await track(mosquittoSub({ port, filter: 'sensors/#', credentials: boiler })).subscribed()).toEqual([128]);
    expect(await track(pahoSub({ port, filters: ['sensors/b1/#'], credentials: boiler })).subscribed()).toEqual([128]);
  });

  it('a reader cannot publish: acknowledged, recorded, neither stored nor delivered; it receives the readings', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    const reader = track(mosquittoSub({ port, filter: 'sensors/#', credentials: dashboard }));
    const operator = track(pahoSub({ port, filters: ['sensors/#'], credentials: ops }));
    expect(await reader.subscribed()).toEqual([1]);
    expect(await operator.subscribed()).toEqual([1]);

    const forgedId = newId();
    // acknowledged, so a misconfigured client does not re-send it forever (MQTT 3.1.1 has no negative PUBACK)
    const forged = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(forgedId),
      credentials: dashboard,
    });
    expect(forged.code).toBe(0);
    const realId = newId();
    expect(
      (await mosquittoPub({ port, topic: 'sensors/b1/pressure', payload: reading(realId), credentials: boiler })).code,
    ).toBe(0);

    for (const subscriber of [reader, operator]) {
      await subscriber.received('the publisher reading', (message) => message.payload.includes(realId));
      expect(subscriber.messages.filter((message) => message.payload.includes(forgedId))).toEqual([]);
    }
    expect(await edge.storedIds()).toEqual([realId]);
    expect(await edge.rejected()).toEqual([
      expect.objectContaining({
        topic: 'sensors/b1/pressure',
        reason: "'dashboard' has the reader role and may not publish",
      }),
    ]);
  });

  it('a user limited to some sensor ids publishes only for them', async () => {
    edge = await startTestListener({ users });
    const port = edge.listener.port;
    const own = newId();
    const foreign = newId();
    const result = await pahoPub({
      port,
      credentials: b1only,
      messages: [
        { topic: 'sensors/b1/pressure', payload: reading(own) },
        { topic: 'sensors/b2/pressure', payload: reading(foreign) },
      ],
    });
    expect(result.code).toBe(0);
    expect(result.acknowledged.sort()).toEqual([0, 1]); // both acknowledged, in either order
    expect(await edge.storedIds()).toEqual([own]);
    expect((await edge.rejected()).map((row) => row.reason)).toEqual([
      "'b1only' may publish only on sensors/{b1}/…, not on 'sensors/b2/pressure'",
    ]);
  });

  it('reads a users file written by `npm run sensor-user`, and the simulated sensors log in with SENSOR_USERNAME and SENSOR_PASSWORD_FILE', async () => {
    const passwordFile = join(directory, 'sim.password');
    const cli = await runNode(['edge/sensor-user.ts', 'sim', '--password-file', passwordFile, '--create']);
    expect(cli).toMatchObject({ code: 0, stderr: '' });
    const parsed = parseSensorUsers(cli.stdout);
    if ('error' in parsed) throw new Error(parsed.error);
    expect(parsed.users.map(({ name, role, sensors }) => ({ name, role, sensors }))).toEqual([
      { name: 'sim', role: 'publisher', sensors: 'any' },
    ]);
    edge = await startTestListener({ users: parsed.users });
    const port = edge.listener.port;

    const simulator = spawn(process.execPath, ['--import', 'tsx', 'scripts/simulate-sensors.ts'], {
      env: {
        PATH: process.env['PATH'],
        LOG_LEVEL: 'warn',
        EDGE_SENSOR_URL: `mqtt://127.0.0.1:${port}`,
        SENSOR_COUNT: '2',
        READINGS_PER_SECOND: '20',
        SENSOR_USERNAME: 'sim',
        SENSOR_PASSWORD_FILE: passwordFile,
      },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => simulator.once('exit', resolve));
    try {
      await expect
        .poll(async () => (await edge!.storedIds()).length, {
          timeout: 30_000,
          message: 'readings of the simulated sensors',
        })
        .toBeGreaterThanOrEqual(10);
    } finally {
      simulator.kill('SIGTERM');
      await exited;
    }
    // and without the password the simulator's sensors are refused
    await expect(connectSensor(`mqtt://127.0.0.1:${port}`, standardSensors(1)[0]!)).rejects.toThrow(/Not authorized/i);
  });
});

describe('sensor listener with client certificates', () => {
  const DEVICE = '0b6f3a52-7c1e-4d0a-9f5b-2e8c4a1d7e31';
  let certs: TestCertificates;

  beforeAll(async () => {
    certs = await createTestCertificates({ deviceIds: [DEVICE] });
  });

  it('accepts a sensor with a certificate of its CA over TLS and refuses one without', async () => {
    edge = await startTestListener({ tls: { cert: certs.broker.cert, key: certs.broker.key, ca: certs.ca } });
    const port = edge.listener.port;
    const id = newId();
    const device = certs.bundle.devices[DEVICE]!;
    const withCertificate = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(id),
      tls: { caPath: certs.bundle.ca.certPath, certPath: device.certPath, keyPath: device.keyPath },
    });
    expect(withCertificate).toMatchObject({ code: 0, stderr: '' });
    expect(await edge.storedIds()).toEqual([id]);

    const withoutCertificate = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(newId()),
      tls: { caPath: certs.bundle.ca.certPath },
    });
    expect(withoutCertificate.code).not.toBe(0);
    expect(await edge.storedIds()).toEqual([id]);
    await expect
      .poll(
        async () =>
          (await edge!.metrics.sensorConnectionsRefused.get()).values.some(
            (value) => value.labels['reason'] === 'tls-handshake' && value.value === 1,
          ),
        { timeout: 15_000, message: 'the refused handshake to be counted' },
      )
      .toBe(true);
  });

  it('with users too, a sensor needs both its certificate and its password', async () => {
    edge = await startTestListener({ users, tls: { cert: certs.broker.cert, key: certs.broker.key, ca: certs.ca } });
    const port = edge.listener.port;
    const device = certs.bundle.devices[DEVICE]!;
    const tls = { caPath: certs.bundle.ca.certPath, certPath: device.certPath, keyPath: device.keyPath };
    const certificateOnly = await mosquittoPub({ port, topic: 'sensors/b1/pressure', payload: reading(newId()), tls });
    expect(certificateOnly.stderr).toMatch(/Connection Refused: not authori[sz]ed/);
    const id = newId();
    const both = await mosquittoPub({
      port,
      topic: 'sensors/b1/pressure',
      payload: reading(id),
      tls,
      credentials: boiler,
    });
    expect(both).toMatchObject({ code: 0, stderr: '' });
    expect(await edge.storedIds()).toEqual([id]);
  });
});

describe('sensor listener exposure', () => {
  it('refuses to start on a non-loopback address without authentication, saying what to configure', async () => {
    await expect(startTestListener({ host: '0.0.0.0' })).rejects.toThrow(
      /^SENSOR_HOST=0\.0\.0\.0 is not a loopback address and the sensor listener has no authentication: .*SENSOR_USERS_FILE.*SENSOR_ALLOW_ANONYMOUS=true/,
    );
  });

  it('keeps accepting anonymous sensors on loopback when nothing is configured', async () => {
    edge = await startTestListener({ host: '127.0.0.1' });
    const id = newId();
    expect(
      (await mosquittoPub({ port: edge.listener.port, topic: 'sensors/b1/pressure', payload: reading(id) })).code,
    ).toBe(0);
    expect(await edge.storedIds()).toEqual([id]);
  });
});

function runNode(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
