/**
 * The bridge's MQTT connection: a persistent session (clean:false, clientId = the CN of the
 * bridge's service certificate) subscribed to devices/+/telemetry with QoS 1, PUBACKs deferred
 * until commit (deferred-puback.ts), the publisher of devices/{id}/sync/ack, and of the revocation
 * list on control/revocations (bridge/revocation-publisher.ts).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../../common/logger.js';
import type { TlsFiles } from '../../common/tls-files.js';
import type { SyncAck } from '../../schemas/messages.js';
import { ALL_TELEMETRY_FILTER, CONTROL_REVOCATIONS_TOPIC, topics } from '../../schemas/topics.js';
import { deferPubacks, type Delivery } from './deferred-puback.js';
import { syncAckPayload } from './sync-ack-payload.js';

export interface BridgeMqttOptions {
  url: string;
  clientId: string;
  /** mutual TLS (mqtts://); null for plain mqtt:// (tests) */
  tls: TlsFiles | null;
  onMessage: (delivery: Delivery) => void;
  logger: Logger;
  /** messages received and not yet committed before reading from the broker pauses */
  maxUncommitted?: number;
  onInFlightChange?: (inFlight: number) => void;
  /** start() fails when the first connection takes longer; default 30 s */
  firstConnectTimeoutMs?: number;
}

export interface BridgeMqttClient {
  /** Connects, waits for the first CONNACK and makes sure the subscription exists. */
  start(): Promise<void>;
  publishAck(deviceId: string, ack: SyncAck): Promise<void>;
  /** publishes the revocation list, retained, QoS 1, on control/revocations (G9); resolves on the PUBACK */
  publishRevocationList(payload: string): Promise<void>;
  /** called after every CONNACK, the first one included */
  onConnect(listener: () => void): void;
  isConnected(): boolean;
  inFlight(): number;
  /** Disconnects cleanly (unacknowledged messages stay in the broker's session). */
  close(): Promise<void>;
}

export function createBridgeMqttClient(options: BridgeMqttOptions): BridgeMqttClient {
  const clientOptions: IClientOptions = {
    clientId: options.clientId,
    // G3: a persistent session: what the bridge has not acknowledged stays with the broker
    clean: false,
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 1000,
    // mqtt.js 5.16 stops reconnecting for good after a refused CONNACK (handlers/connack.js sets
    // reconnectSuppressed) unless this is set: a broker that briefly refuses (restarting, its
    // persistence not ready: "Server unavailable") would leave the bridge disconnected forever.
    reconnectOnConnackError: true,
    connectTimeout: 10_000,
    manualConnect: true,
    ...(options.tls
      ? { ca: options.tls.ca, cert: options.tls.cert, key: options.tls.key, rejectUnauthorized: true }
      : {}),
  };
  const client: MqttClient = mqtt.connect(options.url, clientOptions);
  const pubacks = deferPubacks(client, options.onMessage, {
    ...(options.maxUncommitted !== undefined ? { maxUncommitted: options.maxUncommitted } : {}),
    ...(options.onInFlightChange ? { onInFlightChange: options.onInFlightChange } : {}),
  });
  let lastError: Error | undefined;
  client.on('error', (error) => {
    lastError = error;
    options.logger.warn({ err: error }, 'mqtt error');
  });
  client.on('offline', () => options.logger.warn('mqtt offline; reconnecting'));
  client.on('connect', (connack) => options.logger.info({ sessionPresent: connack.sessionPresent }, 'mqtt connected'));

  return {
    start: async () => {
      client.connect();
      await firstConnect(client, options.firstConnectTimeoutMs ?? 30_000, () => lastError);
      const granted = await client.subscribeAsync(ALL_TELEMETRY_FILTER, { qos: 1 });
      if (granted.some((grant) => grant.qos !== 1)) {
        throw new Error(`the broker did not grant QoS 1 on ${ALL_TELEMETRY_FILTER}: ${JSON.stringify(granted)}`);
      }
    },
    publishAck: async (deviceId, ack) => {
      const { payload, shortened } = syncAckPayload(ack);
      if (shortened) {
        options.logger.warn(
          { deviceId, batchId: ack.batchId, rejected: ack.rejected.length },
          'sync/ack shortened to fit the broker payload limit',
        );
      }
      await client.publishAsync(topics.syncAck(deviceId), payload, { qos: 1 });
    },
    publishRevocationList: async (payload) => {
      await client.publishAsync(CONTROL_REVOCATIONS_TOPIC, payload, { qos: 1, retain: true });
    },
    onConnect: (listener) => void client.on('connect', () => listener()),
    isConnected: () => client.connected,
    inFlight: () => pubacks.inFlight(),
    close: async () => {
      pubacks.dispose();
      await closeClient(client);
    },
  };
}

function firstConnect(client: MqttClient, timeoutMs: number, lastError: () => Error | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('connect', onConnect);
      client.end(true);
      const cause = lastError();
      reject(new Error(`no MQTT connection within ${timeoutMs} ms${cause ? `: ${cause.message}` : ''}`));
    }, timeoutMs);
    const onConnect = (): void => {
      clearTimeout(timer);
      resolve();
    };
    client.once('connect', onConnect);
  });
}

/**
 * Sends DISCONNECT when nothing is waiting for the broker; otherwise closes the socket at once
 * (mqtt.js's non-forced end() would wait for those acknowledgements indefinitely). Either way the
 * session and its unacknowledged messages stay with the broker.
 */
async function closeClient(client: MqttClient): Promise<void> {
  const idle = client.connected && Object.keys(client.outgoing).length === 0;
  await client.endAsync(!idle);
}
