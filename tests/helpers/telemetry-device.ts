/**
 * A device speaking MQTT directly (no edge agent): publishes telemetry batches with QoS 1 and
 * collects the bridge's sync acks. For tests that replay, corrupt or race batches on purpose.
 * Ended at teardown.
 */
import { randomUUID } from 'node:crypto';
import type { IClientOptions, MqttClient } from 'mqtt';
import type { SyncAck, TelemetryBatch } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { connectClient } from './mqtt-client.js';

export interface TelemetryDevice {
  id: string;
  client: MqttClient;
  /** every sync/ack received, in order */
  acks: SyncAck[];
  /** the size in bytes of each sync/ack payload, in the same order */
  ackBytes: number[];
  /** publishes a batch (or any raw text) on devices/{id}/telemetry; resolves on the broker's PUBACK */
  send(payload: TelemetryBatch | string): Promise<void>;
  /** the ack answering this batch id, if one came */
  ackFor(batchId: string): SyncAck | undefined;
}

/** `options` may carry TLS material (ca, cert, key) for an mqtts:// broker. */
export async function connectTelemetryDevice(
  url: string,
  id: string = randomUUID(),
  options: IClientOptions = {},
): Promise<TelemetryDevice> {
  const client = await connectClient(url, { clientId: id, clean: true, ...options });
  const acks: SyncAck[] = [];
  const ackBytes: number[] = [];
  client.on('message', (_topic, payload) => {
    acks.push(JSON.parse(payload.toString()) as SyncAck);
    ackBytes.push(payload.length);
  });
  await client.subscribeAsync(topics.syncAck(id), { qos: 1 });
  return {
    id,
    client,
    acks,
    ackBytes,
    send: async (payload) => {
      await client.publishAsync(topics.telemetry(id), typeof payload === 'string' ? payload : JSON.stringify(payload), {
        qos: 1,
      });
    },
    ackFor: (batchId) => acks.find((ack) => ack.batchId === batchId),
  };
}
