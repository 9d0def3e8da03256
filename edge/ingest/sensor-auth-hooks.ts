/**
 * Wires sensor authentication and permissions into the sensor listener's aedes 1.2.0 hooks:
 *
 *   authenticate        ./sensor-authentication.ts decides; the principal is kept per client.
 *                       A refusal calls back an error with returnCode 4 or 5, which aedes
 *                       (lib/handlers/connect.js) sends as the CONNACK code before closing.
 *   authorizeSubscribe  ./sensor-access.ts decides; a refused filter gets SUBACK 128 (calling
 *                       back null, null) and the connection stays.
 *   principalOf         for the listener's authorizePublish, which records and drops a publish
 *                       the principal may not make (G5, like any rejected input: acknowledged,
 *                       not routed), since MQTT 3.1.1 has no negative PUBACK and a closed
 *                       connection would make the sensor re-send it forever.
 *
 * Every refusal is logged with the client id, user name and reason (never the password) and
 * connection refusals are counted in edge_sensor_connections_refused_total{reason}.
 */
import type { TLSSocket } from 'node:tls';
import type { AedesOptions, AuthenticateError, Client } from 'aedes';
import type { Logger } from '../../common/logger.js';
import type { EdgeMetrics } from '../metrics.js';
import { decideSensorSubscribe, type SensorPrincipal } from './sensor-access.js';
import {
  createSensorAuthenticator,
  type SensorAuthenticationConfig,
  type SensorCredentials,
} from './sensor-authentication.js';

export interface SensorAuthHooks {
  authenticate: NonNullable<AedesOptions['authenticate']>;
  authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']>;
  /** who an authenticated client is; undefined for a client that never passed authenticate */
  principalOf(client: Client | null): SensorPrincipal | undefined;
}

/** The subject CN of the client certificate, when the connection is TLS and the certificate was verified. */
function verifiedCertificateName(client: Client): string | undefined {
  const socket = (client as unknown as { conn?: Partial<TLSSocket> }).conn;
  if (socket?.authorized !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

export function createSensorAuthHooks(options: {
  authentication: SensorAuthenticationConfig;
  log: Logger;
  metrics?: EdgeMetrics;
}): SensorAuthHooks {
  const { log, metrics } = options;
  const authenticator = createSensorAuthenticator(options.authentication);
  const principals = new WeakMap<Client, SensorPrincipal>();

  // G9 (edge side): beyond loopback, only a sensor that proves who it is gets a session
  const authenticate: SensorAuthHooks['authenticate'] = (client, username, password, callback) => {
    const credentials: SensorCredentials = {
      username: username ?? undefined,
      password: password ?? undefined,
      certificateName: verifiedCertificateName(client),
    };
    authenticator(credentials).then(
      (outcome) => {
        if (outcome.ok) {
          principals.set(client, outcome.principal);
          callback(null, true);
          return;
        }
        metrics?.sensorConnectionsRefused.inc({
          reason: outcome.returnCode === 4 ? 'bad-credentials' : 'no-credentials',
        });
        log.warn(
          {
            clientId: client.id,
            username: credentials.username,
            returnCode: outcome.returnCode,
            reason: outcome.reason,
          },
          `refused a sensor connection: ${outcome.reason}`,
        );
        const error = new Error(outcome.reason) as AuthenticateError;
        error.returnCode = outcome.returnCode;
        callback(error, false);
      },
      (error: unknown) => {
        log.error({ err: error, clientId: client.id }, 'sensor authentication failed');
        const refusal = new Error('authentication failed') as AuthenticateError;
        refusal.returnCode = 3; // server unavailable: the client may try again
        callback(refusal, false);
      },
    );
  };

  const authorizeSubscribe: SensorAuthHooks['authorizeSubscribe'] = (client, subscription, callback) => {
    const principal = principals.get(client);
    const decision = principal
      ? decideSensorSubscribe(principal, subscription.topic)
      : { allowed: false as const, reason: 'the client is not authenticated' };
    if (decision.allowed) {
      callback(null, subscription);
      return;
    }
    log.warn(
      { topic: subscription.topic, clientId: client.id, user: principal?.name, reason: decision.reason },
      `refused a sensor subscription: ${decision.reason}`,
    );
    callback(null, null); // negated: SUBACK 0x80, the connection stays up
  };

  return {
    authenticate,
    authorizeSubscribe,
    principalOf: (client) => (client ? principals.get(client) : undefined),
  };
}
