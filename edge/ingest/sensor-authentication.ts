/**
 * Authenticating a sensor's CONNECT: who it is (a SensorPrincipal, ./sensor-access.ts) or the
 * CONNACK code that refuses it. No I/O; password checks run scrypt on the thread pool.
 *
 *   users configured     a username and its password are required:
 *                          no username                 → CONNACK 5 (not authorized)
 *                          unknown user, wrong password → CONNACK 4 (bad user name or password)
 *                        (with client certificates too, the TLS layer has checked the certificate first)
 *   client certificates  (no users) a client whose certificate the TLS layer verified is accepted
 *                        under its CN, role both; the TLS handshake refuses everyone else
 *   neither              anonymous: every client is accepted as ANONYMOUS_SENSOR, whatever it sends
 *                        (the listener only allows this on loopback or with SENSOR_ALLOW_ANONYMOUS,
 *                        ./listener-exposure.ts)
 *
 * An unknown user costs the same scrypt derivation as a known one (against a fixed dummy hash),
 * so the time of a refusal does not tell whether a user name exists. aedes 1.2.0
 * lib/handlers/connect.js sends the returnCode of the error given to the authenticate callback
 * when it is 2 to 5, and 5 otherwise, then closes the connection.
 */
import { type PasswordHash, hashPasswordSync, verifyPassword } from './sensor-passwords.js';
import { ANONYMOUS_SENSOR, type SensorPrincipal } from './sensor-access.js';
import type { SensorUser } from './sensor-users.js';

export interface SensorAuthenticationConfig {
  /** when given (non-empty), every client must log in as one of these users */
  users?: readonly SensorUser[];
  /** the TLS layer requires and verifies client certificates */
  clientCertificates?: boolean;
}

export interface SensorCredentials {
  username: string | undefined;
  password: Buffer | undefined;
  /** the subject CN of a client certificate the TLS layer verified */
  certificateName: string | undefined;
}

export type AuthenticationOutcome =
  | { ok: true; principal: SensorPrincipal }
  | { ok: false; returnCode: 4 | 5; reason: string };

export type SensorAuthenticator = (credentials: SensorCredentials) => Promise<AuthenticationOutcome>;

/** True when the listener asks its clients to prove who they are. */
export function requiresAuthentication(config: SensorAuthenticationConfig): boolean {
  return (config.users?.length ?? 0) > 0 || config.clientCertificates === true;
}

export function createSensorAuthenticator(config: SensorAuthenticationConfig): SensorAuthenticator {
  const users = new Map((config.users ?? []).map((user) => [user.name, user]));
  // same parameters as the first user, so a refusal of an unknown name takes as long as a wrong password
  const first = config.users?.[0];
  const dummy: PasswordHash | undefined = first ? hashPasswordSync('no such user', first.password.params) : undefined;

  return async ({ username, password, certificateName }) => {
    if (users.size > 0) {
      if (username === undefined || username === '') {
        return { ok: false, returnCode: 5, reason: 'a user name and password are required' };
      }
      const user = users.get(username);
      const matches = await verifyPassword(password ?? Buffer.alloc(0), user?.password ?? dummy!);
      if (!user || !matches) {
        return { ok: false, returnCode: 4, reason: `bad user name or password (user '${username}')` };
      }
      return { ok: true, principal: { name: user.name, via: 'password', role: user.role, sensors: user.sensors } };
    }
    if (config.clientCertificates) {
      if (certificateName === undefined) {
        return { ok: false, returnCode: 5, reason: 'a verified client certificate is required' };
      }
      return { ok: true, principal: { name: certificateName, via: 'certificate', role: 'both', sensors: 'any' } };
    }
    return { ok: true, principal: ANONYMOUS_SENSOR };
  };
}
