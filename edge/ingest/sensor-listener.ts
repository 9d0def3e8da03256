/**
 * The local MQTT listener sensors publish to: an embedded Aedes on plain TCP.
 *
 * Aedes 1.2.0 writes a QoS 1 PUBACK *before* routing a message; only authorizePublish runs before
 * it (lib/handlers/publish.js). So the work happens in authorizePublish: normalize, hand to the
 * group commit, and call back only after the commit. A PUBACK therefore proves the reading is in
 * libSQL (G1).
 *
 * A malformed reading must not disconnect the sensor: mqtt.js would re-send it after every
 * reconnect and it would block everything behind it. It is recorded in rejected_readings, logged,
 * announced on sensors/{sensorId}/{dataType}/error, and acknowledged without being routed or
 * retained (./unrouted-publish.ts), so no subscriber ever sees it. If the database itself fails,
 * the callback gets the error: no PUBACK, the connection closes and the sensor re-sends later. A
 * publish anywhere but sensors/{sensorId}/{dataType} is recorded and dropped the same way (without
 * a notice topic, since it names no sensor); that includes sensors/{s}/{t}/error, so only the edge
 * itself publishes error notices (with broker.publish, which does not pass authorizePublish).
 * Valid readings are routed as published: local applications may watch sensors/#.
 *
 * Who may connect, publish and subscribe: ./sensor-auth-hooks.ts (users with a password, client
 * certificates over TLS, or anonymous clients on loopback). A publish the client may not make is
 * recorded, acknowledged and dropped like any rejected input. The listener refuses to start on a
 * non-loopback address without authentication unless anonymous access is explicitly allowed
 * (./listener-exposure.ts).
 *
 * Neither aedes 1.2.0 nor mqtt-packet 9 bounds a packet: the parser buffers a whole packet of up to
 * 256 MiB before authorizePublish sees it. Each connection gets the shared packet-size guard
 * (common/packet-size-guard.ts), which closes it as soon as a fixed header declares more than
 * SENSOR_MAX_PACKET_BYTES (G7).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesOptions } from 'aedes';
import type { Logger } from '../../common/logger.js';
import { rateLimitedLog } from '../../common/rate-limited-log.js';
import { limitIncomingPacketSize, maxPacketBytesFor } from '../../common/packet-size-guard.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { SensorReadingError, TelemetryRecord } from '../../schemas/messages.js';
import { parseLocalCommandResultTopic, topics } from '../../schemas/topics.js';
import type { EdgeMetrics } from '../metrics.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import type { GroupCommitWriter } from './group-commit.js';
import { checkListenerExposure } from './listener-exposure.js';
import { normalizeReading } from './reading-normalizer.js';
import { decideSensorPublish } from './sensor-access.js';
import { createSensorAuthHooks } from './sensor-auth-hooks.js';
import { requiresAuthentication } from './sensor-authentication.js';
import type { SensorUser } from './sensor-users.js';
import { acknowledgeWithoutRouting } from './unrouted-publish.js';

export interface SensorListenerOptions {
  deviceId: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 1883; 0 picks a free port (see SensorListener.port) */
  port?: number;
  writer: GroupCommitWriter<TelemetryRecord>;
  store: TelemetryStore;
  logger: Logger;
  metrics?: EdgeMetrics;
  /** clock for receive times (epoch ms) */
  now?: () => number;
  /** when given (non-empty), every client must log in as one of these users (./sensor-users.ts) */
  users?: readonly SensorUser[];
  /** listen with TLS instead of plain TCP; with `ca`, clients must present a certificate it signed */
  tls?: SensorTlsFiles;
  /** accept anonymous clients on a non-loopback host; without authentication the listener refuses to start there */
  allowAnonymous?: boolean;
  /**
   * G6: a local application's answer on local/commands/{commandId}/result (its publish is
   * acknowledged and never routed to other clients); without it such a publish is dropped
   */
  onLocalCommandResult?: (commandId: string, payload: Buffer, clientId: string | undefined) => void;
}

/** PEM buffers of the sensor listener's TLS: its certificate and key, and the CA of client certificates. */
export interface SensorTlsFiles {
  cert: Buffer;
  key: Buffer;
  /** when given, a client certificate signed by this CA is required */
  ca?: Buffer;
}

export interface SensorListener {
  readonly host: string;
  /** the port actually listened on */
  readonly port: number;
  /** G6: publishes to local applications (local/commands/{type}, local/config/{key}) at QoS 1 */
  publishLocal(topic: string, payload: string, retain: boolean): Promise<void>;
  /**
   * Graceful stop: refuses new connections and new readings, waits until every reading already
   * being handled is committed and acknowledged, then disconnects the sensors.
   */
  close(): Promise<void>;
}

/**
 * Largest packet the listener reads (G7): the largest reading payload plus a topic of any length.
 * A longer one closes the connection from its fixed header, before its body is read
 * (common/packet-size-guard.ts). Between MAX_SENSOR_PAYLOAD_BYTES and this, a payload is read and
 * refused with a reason, acknowledged (G5), so a sensor that sends a slightly too large reading
 * does not re-send it forever; only a packet no sensor has a reason to send costs a connection.
 */
export const SENSOR_MAX_PACKET_BYTES = maxPacketBytesFor(MAX_SENSOR_PAYLOAD_BYTES);

/** Longest stretch of a rejected payload quoted in an error notice. */
const NOTICE_PAYLOAD_CHARS = 256;

/** sensors/{a}/{b}: the only shape of topic a sensor may publish on (its ids are checked by the normalizer). */
function isReadingTopic(topic: string): boolean {
  const levels = topic.split('/');
  return levels.length === 3 && levels[0] === 'sensors';
}

function noticeTopic(readingTopic: string): string {
  const [, sensorId = '', dataType = ''] = readingTopic.split('/');
  return topics.sensorError(sensorId, dataType);
}

export async function startSensorListener(options: SensorListenerOptions): Promise<SensorListener> {
  const host = options.host ?? '127.0.0.1';
  const now = options.now ?? Date.now;
  const log = options.logger.child({ component: 'sensor-listener' });
  const inProgress = new Set<Promise<void>>();
  let closing = false;
  // G8: one line per interval with a count, not one per rejected reading (garbage at full speed)
  const rejections = rateLimitedLog<{ topic: string; clientId: string | undefined; reason: string }>(log, {
    intervalMs: 10_000,
    level: 'warn',
    message: ({ count, sample }) =>
      count === 1
        ? `rejected sensor reading on ${sample.topic}: ${sample.reason}`
        : `rejected ${count} more sensor readings in the last interval; the first on ${sample.topic}: ${sample.reason}`,
  });

  const authentication = { users: options.users, clientCertificates: options.tls?.ca !== undefined };
  const exposure = checkListenerExposure({
    host,
    authenticated: requiresAuthentication(authentication),
    allowAnonymous: options.allowAnonymous === true,
  });
  if (!exposure.ok) throw new Error(exposure.reason);
  if (exposure.warning) log.warn(exposure.warning);
  const access = createSensorAuthHooks({ authentication, log, metrics: options.metrics });

  // G5: a bad reading is recorded, announced and acknowledged, so it is not re-sent forever
  async function rejectReading(
    topic: string,
    payload: Buffer,
    reason: string,
    clientId: string | undefined,
  ): Promise<void> {
    const receivedAt = now();
    await options.store.recordRejectedReading({ receivedAt, topic, payload, reason });
    options.metrics?.readingsRejected.inc();
    rejections.note('rejected', { topic, clientId, reason });
    const notice: SensorReadingError = {
      error: reason,
      topic,
      payload: payload
        .subarray(0, NOTICE_PAYLOAD_CHARS * 4)
        .toString('utf8')
        .slice(0, NOTICE_PAYLOAD_CHARS),
      at: new Date(receivedAt).toISOString(),
    };
    // QoS 1 like the readings: a subscriber of sensors/# must never get QoS 0 mixed with QoS 1 (aedes#994)
    broker.publish(
      {
        cmd: 'publish',
        topic: noticeTopic(topic),
        payload: Buffer.from(JSON.stringify(notice)),
        qos: 1,
        retain: false,
        dup: false,
      },
      (error) => {
        if (error) log.warn({ err: error, topic }, 'could not publish the rejection notice');
      },
    );
  }

  async function rejectMisplacedPublish(
    topic: string,
    payload: Buffer,
    clientId: string | undefined,
  ): Promise<'rejected'> {
    const reason = `sensors may publish only on sensors/{sensorId}/{dataType}; dropped a publish on '${topic}'`;
    await options.store.recordRejectedReading({ receivedAt: now(), topic, payload, reason });
    options.metrics?.readingsRejected.inc();
    rejections.note('misplaced', { topic, clientId, reason });
    return 'rejected';
  }

  /** A publish the client's role or sensor ids do not allow: recorded and dropped (no notice). */
  async function rejectForbiddenPublish(
    topic: string,
    payload: Buffer,
    clientId: string | undefined,
    reason: string,
  ): Promise<'rejected'> {
    await options.store.recordRejectedReading({ receivedAt: now(), topic, payload, reason });
    options.metrics?.readingsRejected.inc();
    rejections.note('forbidden', { topic, clientId, reason });
    return 'rejected';
  }

  /** 'stored': committed, route it to local subscribers; 'rejected': acknowledge it, route nothing */
  async function handleReading(
    topic: string,
    payload: Buffer,
    clientId: string | undefined,
  ): Promise<'stored' | 'rejected'> {
    const normalized = normalizeReading(options.deviceId, topic, payload, now());
    if (!normalized.ok) {
      await rejectReading(topic, payload, normalized.reason, clientId);
      return 'rejected';
    }
    // G1: resolves only after the COMMIT; authorizePublish lets the PUBACK go only then
    await options.writer.write(normalized.record);
    options.metrics?.readingsAccepted.inc();
    return 'stored';
  }

  /** G6: handed to the downstream side, acknowledged, never routed ('rejected' here means only that) */
  function handleLocalResult(commandId: string, payload: Buffer, clientId: string | undefined): 'rejected' {
    if (options.onLocalCommandResult) options.onLocalCommandResult(commandId, payload, clientId);
    else
      log.warn(
        { commandId, clientId },
        'a local command result arrived, but no command is handed to local applications',
      );
    return 'rejected';
  }

  const authorizePublish: NonNullable<AedesOptions['authorizePublish']> = (client, packet, callback) => {
    const clientId = client?.id;
    const topic = packet.topic;
    if (closing) {
      callback(new Error('the edge agent is shutting down; publish again later'));
      return;
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload, 'utf8') : packet.payload;
    const principal = access.principalOf(client);
    const permission = principal
      ? decideSensorPublish(principal, topic)
      : { allowed: false as const, reason: 'the client is not authenticated' };
    // A wrong topic is bad input like a bad payload: recorded, logged and acknowledged. Closing the
    // connection instead would make the sensor re-send the same publish after every reconnect.
    const localResultOf = parseLocalCommandResultTopic(topic);
    const handling = (
      !permission.allowed
        ? rejectForbiddenPublish(topic, payload, clientId, permission.reason)
        : localResultOf !== null
          ? Promise.resolve(handleLocalResult(localResultOf, payload, clientId))
          : isReadingTopic(topic)
            ? handleReading(topic, payload, clientId)
            : rejectMisplacedPublish(topic, payload, clientId)
    ).then(
      (outcome) => {
        // G5: acknowledged either way; only a stored reading reaches subscribers or the retained store
        if (outcome === 'rejected') acknowledgeWithoutRouting(packet);
        callback(null);
      },
      (error: unknown) => {
        log.error(
          { err: error, topic, clientId },
          'could not store a sensor reading; withholding the acknowledgement so the sensor re-sends it',
        );
        callback(error instanceof Error ? error : new Error(String(error)));
      },
    );
    inProgress.add(handling);
    handling
      .finally(() => inProgress.delete(handling))
      .catch((error: unknown) => log.error({ err: error }, 'reading handler failed'));
  };

  const broker = await Aedes.createBroker({
    authenticate: access.authenticate,
    authorizePublish,
    authorizeSubscribe: access.authorizeSubscribe,
  });
  broker.on('clientError', (client, error) =>
    log.debug({ clientId: client.id, err: error }, 'sensor connection error'),
  );

  const sockets = new Set<Socket>();
  let warnedGuardUnavailable = false;
  const onConnection = (socket: Socket) => {
    const client = broker.handle(socket);
    // G7: an oversize packet closes the connection from its fixed header, before it is buffered
    const guarded = limitIncomingPacketSize(client, SENSOR_MAX_PACKET_BYTES, (error) => {
      options.metrics?.oversizePackets.inc();
      log.warn(
        { clientId: client.id, remoteAddress: socket.remoteAddress, reason: error.message },
        'sensor packet too large, closing the connection',
      );
    });
    if (!guarded && !warnedGuardUnavailable) {
      warnedGuardUnavailable = true;
      log.error(
        'cannot bound sensor packet size at parse time (aedes internals changed); payload size is still checked after parsing',
      );
    }
  };
  const server: Server = options.tls
    ? createTlsServer(
        {
          cert: options.tls.cert,
          key: options.tls.key,
          ...(options.tls.ca ? { ca: options.tls.ca, requestCert: true, rejectUnauthorized: true } : {}),
          minVersion: 'TLSv1.2',
          handshakeTimeout: 10_000,
        },
        onConnection,
      ).on('tlsClientError', (error: Error, socket) => {
        options.metrics?.sensorConnectionsRefused.inc({ reason: 'tls-handshake' });
        log.warn({ remoteAddress: socket.remoteAddress, reason: error.message }, 'sensor TLS handshake refused');
      })
    : createServer(onConnection);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 1883, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // an accept error after start-up (e.g. EMFILE) must not become an uncaught 'error' event
  server.on('error', (error) => log.error({ err: error }, `sensor listener error: ${error.message}`));
  const port = (server.address() as AddressInfo).port;
  const scheme = options.tls ? 'mqtts' : 'mqtt';
  const authenticatedBy = [
    ...(options.users?.length ? ['password'] : []),
    ...(options.tls?.ca ? ['client certificate'] : []),
  ];
  log.info(
    { host, port, tls: options.tls !== undefined, authentication: authenticatedBy.join(' and ') || 'none' },
    `sensor listener on ${scheme}://${host}:${port}`,
  );

  let closed: Promise<void> | null = null;
  async function close(): Promise<void> {
    closing = true;
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    while (inProgress.size > 0) await Promise.allSettled([...inProgress]);
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await serverClosed;
    rejections.close();
  }

  return {
    host,
    port,
    publishLocal: (topic, payload, retain) =>
      new Promise<void>((resolve, reject) => {
        // QoS 1 like every other local publish (aedes#994)
        broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false }, (error) =>
          error ? reject(error) : resolve(),
        );
      }),
    close: () => {
      closed ??= close();
      return closed;
    },
  };
}
