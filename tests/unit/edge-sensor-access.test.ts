/**
 * Who may connect to the edge's sensor listener and what each sensor principal may publish and
 * subscribe to (pure decisions), and where the listener may listen without authentication.
 */
import { describe, expect, it } from 'vitest';
import { checkListenerExposure, isLoopbackHost } from '../../edge/ingest/listener-exposure.js';
import {
  ANONYMOUS_SENSOR,
  decideSensorPublish,
  decideSensorSubscribe,
  type SensorPrincipal,
} from '../../edge/ingest/sensor-access.js';
import { createSensorAuthenticator, requiresAuthentication } from '../../edge/ingest/sensor-authentication.js';
import { hashPasswordSync } from '../../edge/ingest/sensor-passwords.js';
import type { SensorUser } from '../../edge/ingest/sensor-users.js';

const principal = (role: SensorPrincipal['role'], sensors: SensorPrincipal['sensors'] = 'any'): SensorPrincipal => ({
  name: 'u',
  via: 'password',
  role,
  sensors,
});

describe('decideSensorPublish', () => {
  it('lets publishers and both publish anywhere when not limited to sensor ids', () => {
    for (const role of ['publisher', 'both'] as const) {
      expect(decideSensorPublish(principal(role), 'sensors/b1/temperature')).toEqual({ allowed: true });
      // the shape of the topic is checked after the permission (recorded as a misplaced publish)
      expect(decideSensorPublish(principal(role), 'devices/x/telemetry')).toEqual({ allowed: true });
    }
    expect(decideSensorPublish(ANONYMOUS_SENSOR, 'sensors/b1/temperature')).toEqual({ allowed: true });
  });

  it('refuses every publish of a reader', () => {
    expect(decideSensorPublish(principal('reader'), 'sensors/b1/temperature')).toEqual({
      allowed: false,
      reason: "'u' has the reader role and may not publish",
    });
  });

  it('limits a user with sensor ids to sensors/{id}/…', () => {
    const limited = principal('publisher', ['b1', 'b:2']);
    expect(decideSensorPublish(limited, 'sensors/b1/temperature')).toEqual({ allowed: true });
    expect(decideSensorPublish(limited, 'sensors/b:2/temperature')).toEqual({ allowed: true });
    expect(decideSensorPublish(limited, 'sensors/b1/temperature/error')).toEqual({ allowed: true }); // misplaced later
    for (const topic of ['sensors/b3/temperature', 'sensors/b12/temperature', 'sensors', 'devices/b1/x']) {
      expect(decideSensorPublish(limited, topic)).toEqual({
        allowed: false,
        reason: `'u' may publish only on sensors/{b1,b:2}/…, not on '${topic}'`,
      });
    }
  });
});

describe('decideSensorSubscribe', () => {
  it('refuses every subscription of a publisher', () => {
    expect(decideSensorSubscribe(principal('publisher'), 'sensors/#')).toEqual({
      allowed: false,
      reason: "'u' has the publisher role and may not subscribe",
    });
  });

  it('lets readers, both, apps and anonymous clients subscribe under sensors/ only (local/ aside)', () => {
    for (const who of [principal('reader'), principal('both'), principal('app'), ANONYMOUS_SENSOR]) {
      expect(decideSensorSubscribe(who, 'sensors/#')).toEqual({ allowed: true });
      expect(decideSensorSubscribe(who, 'sensors/+/temperature')).toEqual({ allowed: true });
      for (const filter of ['#', '+/#', '$SYS/#', '$edge/unrouted', 'devices/#']) {
        expect(decideSensorSubscribe(who, filter)).toEqual({
          allowed: false,
          reason: `sensor clients may subscribe only under sensors/ (local applications also under local/), not to '${filter}'`,
        });
      }
    }
  });

  it('lets only local applications (app role, both for any sensor, anonymous on loopback) subscribe under local/', () => {
    for (const who of [principal('app'), principal('both'), ANONYMOUS_SENSOR]) {
      expect(decideSensorSubscribe(who, 'local/#')).toEqual({ allowed: true });
      expect(decideSensorSubscribe(who, 'local/commands/reboot')).toEqual({ allowed: true });
    }
    for (const who of [principal('reader'), principal('both', ['b1'])]) {
      expect(decideSensorSubscribe(who, 'local/#')).toMatchObject({ allowed: false });
    }
  });

  it('lets only local applications publish command results, and an app nothing else', () => {
    const result = 'local/commands/0b6f2f4e-1c1a-4c39-9d8e-1f2a3b4c5d6e/result';
    for (const who of [principal('app'), principal('both'), ANONYMOUS_SENSOR]) {
      expect(decideSensorPublish(who, result)).toEqual({ allowed: true });
    }
    for (const who of [principal('publisher'), principal('reader'), principal('both', ['b1'])]) {
      expect(decideSensorPublish(who, result)).toMatchObject({ allowed: false });
    }
    expect(decideSensorPublish(principal('app'), 'sensors/b1/temperature')).toMatchObject({ allowed: false });
    expect(decideSensorPublish(principal('app'), 'local/commands/reboot')).toMatchObject({ allowed: false });
  });

  it('limits a reader with sensor ids to filters naming one of them', () => {
    const limited = principal('reader', ['b1']);
    expect(decideSensorSubscribe(limited, 'sensors/b1/#')).toEqual({ allowed: true });
    for (const filter of ['sensors/#', 'sensors/+/temperature', 'sensors/b2/#']) {
      expect(decideSensorSubscribe(limited, filter)).toEqual({
        allowed: false,
        reason: `'u' may subscribe only to sensors/{b1}/…, not to '${filter}'`,
      });
    }
  });
});

describe('createSensorAuthenticator', () => {
  const FAST = { ln: 10, r: 8, p: 1 };
  const users: SensorUser[] = [
    { name: 'boiler', password: hashPasswordSync('right', FAST), role: 'publisher', sensors: ['b1'] },
    { name: 'ops', password: hashPasswordSync('ops', FAST), role: 'both', sensors: 'any' },
  ];
  const credentials = (username?: string, password?: string, certificateName?: string) => ({
    username,
    password: password === undefined ? undefined : Buffer.from(password),
    certificateName,
  });

  it('with users: CONNACK 5 without a user name, 4 for a wrong password or an unknown user', async () => {
    const authenticate = createSensorAuthenticator({ users });
    expect(await authenticate(credentials())).toEqual({
      ok: false,
      returnCode: 5,
      reason: 'a user name and password are required',
    });
    expect(await authenticate(credentials(undefined, undefined, 'device-cn'))).toMatchObject({
      ok: false,
      returnCode: 5,
    });
    for (const [username, password] of [
      ['boiler', 'wrong'],
      ['boiler', undefined],
      ['boiler', 'ops'],
      ['nobody', 'right'],
    ] as const) {
      expect(await authenticate(credentials(username, password))).toEqual({
        ok: false,
        returnCode: 4,
        reason: `bad user name or password (user '${username}')`,
      });
    }
  });

  it("with users: the right password gives the user's role and sensor ids", async () => {
    const authenticate = createSensorAuthenticator({ users, clientCertificates: true });
    expect(await authenticate(credentials('boiler', 'right', 'device-cn'))).toEqual({
      ok: true,
      principal: { name: 'boiler', via: 'password', role: 'publisher', sensors: ['b1'] },
    });
  });

  it('with client certificates only: the verified certificate CN, role both', async () => {
    const authenticate = createSensorAuthenticator({ clientCertificates: true });
    expect(await authenticate(credentials(undefined, undefined, 'sensor-7'))).toEqual({
      ok: true,
      principal: { name: 'sensor-7', via: 'certificate', role: 'both', sensors: 'any' },
    });
    expect(await authenticate(credentials('x', 'y'))).toMatchObject({ ok: false, returnCode: 5 });
  });

  it('without users or certificates: everyone is the anonymous sensor, whatever they send', async () => {
    const authenticate = createSensorAuthenticator({});
    expect(await authenticate(credentials())).toEqual({ ok: true, principal: ANONYMOUS_SENSOR });
    expect(await authenticate(credentials('x', 'y'))).toEqual({ ok: true, principal: ANONYMOUS_SENSOR });
    expect(requiresAuthentication({})).toBe(false);
    expect(requiresAuthentication({ users: [] })).toBe(false);
    expect(requiresAuthentication({ users })).toBe(true);
    expect(requiresAuthentication({ clientCertificates: true })).toBe(true);
  });
});

describe('listener exposure', () => {
  it('knows the loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost']) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.5', '128.0.0.1', '::ffff:10.0.0.1', 'edge-1', 'localhost.example']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });

  it('allows anonymous sensors on loopback, and anything with authentication', () => {
    expect(checkListenerExposure({ host: '127.0.0.1', authenticated: false, allowAnonymous: false })).toEqual({
      ok: true,
    });
    expect(checkListenerExposure({ host: '0.0.0.0', authenticated: true, allowAnonymous: false })).toEqual({
      ok: true,
    });
  });

  it('refuses a non-loopback address without authentication, unless anonymous access is asked for, with a warning', () => {
    expect(checkListenerExposure({ host: '0.0.0.0', authenticated: false, allowAnonymous: false })).toEqual({
      ok: false,
      reason: expect.stringMatching(
        /^SENSOR_HOST=0\.0\.0\.0 is not a loopback address and the sensor listener has no authentication: anyone who can reach it can publish readings and read sensors\/#\. Configure SENSOR_USERS_FILE/,
      ),
    });
    expect(checkListenerExposure({ host: 'edge-1', authenticated: false, allowAnonymous: true })).toEqual({
      ok: true,
      warning:
        'the sensor listener on edge-1 accepts anonymous clients from the network (SENSOR_ALLOW_ANONYMOUS=true): ' +
        'anyone who can reach it can publish readings and read sensors/#',
    });
  });
});
