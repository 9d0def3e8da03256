/**
 * A stand-in for the bridge, written with a real mqtt.js client: subscribes devices/+/telemetry
 * (QoS 1), records every batch, and answers with a sync/ack on devices/{id}/sync/ack according to
 * its current mode. Disconnected at teardown.
 */
import type { SyncAck, TelemetryBatch } from '../../schemas/messages.js';
import { ALL_TELEMETRY_FILTER, parseDeviceTopic, topics } from '../../schemas/topics.js';
import { connectClient } from './mqtt-client.js';

export interface ReceivedBatch {
  deviceId: string;
  batch: TelemetryBatch;
  receivedAtMs: number;
}

/** 'ack': accept everything; 'ignore': never answer; a function: answer with its ack (or null for none). */
export type BridgeMode = 'ack' | 'ignore' | ((received: ReceivedBatch) => SyncAck | null);

export interface TestBridge {
  readonly received: ReceivedBatch[];
  mode: BridgeMode;
  /** SUBACKs received for devices/+/telemetry so far (grows after each reconnect to a fresh broker) */
  readonly subscriptions: number;
  /** every record id in arrival order, with repeats */
  receivedRecordIds(): string[];
  /** publishes a sync/ack now (e.g. for a batch received while ignoring) */
  acknowledge(received: ReceivedBatch, ack?: SyncAck): Promise<void>;
}

export function fullAck(batch: TelemetryBatch, rejectedIds: readonly string[] = []): SyncAck {
  const rejected = batch.records
    .filter((record) => rejectedIds.includes(record.id))
    .map((record) => ({ id: record.id, reason: 'rejected by the test bridge' }));
  return { batchId: batch.batchId, accepted: batch.records.length - rejected.length, rejected, conflicts: 0 };
}

export async function startTestBridge(brokerUrl: string, mode: BridgeMode = 'ack'): Promise<TestBridge> {
  const client = await connectClient(brokerUrl, {
    clientId: `test-bridge-${process.pid}-${Math.random().toString(16).slice(2)}`,
    clean: true,
    reconnectPeriod: 50,
    resubscribe: false, // subscribed explicitly on every connect, counted
  });
  let subscriptions = 0;
  const bridge: TestBridge = {
    received: [],
    mode,
    get subscriptions() {
      return subscriptions;
    },
    receivedRecordIds: () => bridge.received.flatMap((entry) => entry.batch.records.map((record) => record.id)),
    acknowledge: async (received, ack = fullAck(received.batch)) => {
      await client.publishAsync(topics.syncAck(received.deviceId), JSON.stringify(ack), { qos: 1 });
    },
  };
  const subscribe = () =>
    client.subscribe(ALL_TELEMETRY_FILTER, { qos: 1 }, (error) => {
      if (!error) subscriptions += 1;
    });
  await client.subscribeAsync(ALL_TELEMETRY_FILTER, { qos: 1 });
  subscriptions += 1;
  client.on('connect', (connack) => {
    if (!connack.sessionPresent) subscribe();
  });
  client.on('message', (topic, payload) => {
    const parsed = parseDeviceTopic(topic);
    if (parsed?.kind !== 'telemetry') return;
    const received: ReceivedBatch = {
      deviceId: parsed.deviceId,
      batch: JSON.parse(payload.toString('utf8')) as TelemetryBatch,
      receivedAtMs: Date.now(),
    };
    bridge.received.push(received);
    const current = bridge.mode;
    const ack = current === 'ack' ? fullAck(received.batch) : current === 'ignore' ? null : current(received);
    if (ack !== null) client.publish(topics.syncAck(parsed.deviceId), JSON.stringify(ack), { qos: 1 });
  });
  return bridge;
}
