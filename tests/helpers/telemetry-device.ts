/**
 * A device speaking MQTT directly (no edge agent): publishes telemetry batches with QoS 1 and
 * collects the bridge's sync acks. For tests that replay, corrupt or race batches on purpose.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { SyncAck, TelemetryBatch } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';

export interface TelemetryDevice {
  id: string;
  client: MqttClient;
  /** every sync/ack received, in order */
  acks: SyncAck[];
  /** publishes a batch (or any raw text) on devices/{id}/telemetry; resolves on the broker's PUBACK */
  send(payload: TelemetryBatch | string): Promise<void>;
  close(): Promise<void>;
}

/** `options` may carry TLS material (ca, cert, key) for an mqtts:// broker. */
export async function connectTelemetryDevice(
  url: string,
  id: string = randomUUID(),
  options: IClientOptions = {},
): Promise<TelemetryDevice> {
  const client = await mqtt.connectAsync(url, { clientId: id, clean: true, reconnectPeriod: 0, ...options });
  const acks: SyncAck[] = [];
  client.on('message', (_topic, payload) => acks.push(JSON.parse(payload.toString()) as SyncAck));
  await client.subscribeAsync(topics.syncAck(id), { qos: 1 });
  return {
    id,
    client,
    acks,
    send: async (payload) => {
      await client.publishAsync(topics.telemetry(id), typeof payload === 'string' ? payload : JSON.stringify(payload), {
        qos: 1,
      });
    },
    close: () => client.endAsync(true),
  };
}
