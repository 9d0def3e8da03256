/**
 * The bridge's MQTT connection: a persistent session (clean:false, clientId = the CN of the
 * bridge's service certificate) subscribed to devices/+/telemetry and the downstream report
 * topics (BRIDGE_SUBSCRIPTIONS) with QoS 1, PUBACKs deferred until commit (deferred-puback.ts),
 * the publisher of devices/{id}/sync/ack, of the retained command and config topics (G6,
 * bridge/downstream/), and of the revocation list on control/revocations
 * (bridge/revocation-publisher.ts).
 *
 * One filter per SUBSCRIBE packet, at start, on every resubscription and for the reconciler's
 * snapshot. Upstream hazard (aedes 1.2.0 with aedes-persistence-redis 11.2.2, cluster mode): on a
 * clean:false session, a SUBSCRIBE carrying several filters never gets its SUBACK (one filter
 * does; clean:true does; cf. aedes issue #602), so a bridge that subscribed to its topics in one
 * packet hung at start-up against a Redis-backed broker. mqtt.js 5.16's own resubscription
 * (`resubscribe: true`, client.js _resubscribe) sends every remembered filter in ONE packet, so it
 * is turned off: after a CONNACK without a session the bridge subscribes again itself, one filter
 * at a time (pinned by tests/integration/bridge-redis-subscribe.test.ts).
 */
import { TCP_NO_DELAY } from '../../common/no-delay.js';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../../common/logger.js';
import type { TlsFiles } from '../../common/tls-files.js';
import type { SyncAck } from '../../schemas/messages.js';
import { ALL_TELEMETRY_FILTER, CONTROL_REVOCATIONS_TOPIC, topics } from '../../schemas/topics.js';

/** Everything the bridge subscribes to: telemetry, and (G6) command results, config reports and presence. */
export const BRIDGE_SUBSCRIPTIONS: readonly string[] = [
  ALL_TELEMETRY_FILTER,
  'devices/+/commands/+/result',
  'devices/+/config/reported',
  'devices/+/status',
];
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
  /** the filters to subscribe to, one per SUBSCRIBE packet; default BRIDGE_SUBSCRIPTIONS */
  subscriptions?: readonly string[];
}

export interface BridgeMqttClient {
  /** Connects, waits for the first CONNACK and makes sure the subscription exists. */
  start(): Promise<void>;
  publishAck(deviceId: string, ack: SyncAck): Promise<void>;
  /** publishes the revocation list, retained, QoS 1, on control/revocations (G9); resolves on the PUBACK */
  publishRevocationList(payload: string): Promise<void>;
  /** G6: publishes a retained QoS 1 message ('' clears the topic); resolves on the PUBACK */
  publishRetained(topic: string, payload: string): Promise<void>;
  /** subscribes to one filter (one SUBSCRIBE packet) at QoS 1; resolves on the SUBACK */
  subscribe(filter: string): Promise<void>;
  unsubscribe(filter: string): Promise<void>;
  /** called after every CONNACK, the first one included */
  onConnect(listener: () => void): void;
  /** called after a CONNACK without a session (not the first): the broker lost the bridge's state */
  onSessionLost(listener: () => void): void;
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
    // one filter per SUBSCRIBE (see the header): the bridge resubscribes itself
    resubscribe: false,
    connectTimeout: 10_000,
    manualConnect: true,
    ...TCP_NO_DELAY, // Nagle off (common/no-delay.ts)
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

  const subscriptions = options.subscriptions ?? BRIDGE_SUBSCRIPTIONS;
  const subscribeOne = async (filter: string): Promise<void> => {
    const granted = await client.subscribeAsync(filter, { qos: 1 });
    if (granted.some((grant) => grant.qos !== 1)) {
      throw new Error(`the broker did not grant QoS 1 on ${filter}: ${JSON.stringify(granted)}`);
    }
  };
  const subscribeAll = async (): Promise<void> => {
    for (const filter of subscriptions) await subscribeOne(filter);
  };
  let started = false;
  const sessionLostListeners: Array<() => void> = [];
  client.on('connect', (connack) => {
    if (!started || connack.sessionPresent) return;
    subscribeAll().then(
      () => options.logger.info({ filters: subscriptions }, 'resubscribed after the broker lost the session'),
      (error: unknown) => options.logger.warn({ err: error }, 'resubscription failed; retried on the next connection'),
    );
    for (const listener of sessionLostListeners) listener();
  });

  return {
    start: async () => {
      client.connect();
      await firstConnect(client, options.firstConnectTimeoutMs ?? 30_000, () => lastError);
      await subscribeAll();
      started = true;
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
    publishRetained: async (topic, payload) => {
      await client.publishAsync(topic, payload, { qos: 1, retain: true });
    },
    subscribe: subscribeOne,
    unsubscribe: async (filter) => {
      await client.unsubscribeAsync(filter);
    },
    onConnect: (listener) => void client.on('connect', () => listener()),
    onSessionLost: (listener) => void sessionLostListeners.push(listener),
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
