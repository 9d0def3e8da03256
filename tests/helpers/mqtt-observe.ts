/** Observing MQTT in tests: SUBACK codes, the messages a client receives, and a barrier to know earlier messages had their chance to arrive. */
import type { IPublishPacket, MqttClient } from 'mqtt';
import { expect } from 'vitest';

/** The granted QoS codes of one SUBSCRIBE (128 = refused), whether or not mqtt.js calls it an error. */
export function subscribeGranted(client: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(filters, { qos }, (error, _grants, packet) => {
      if (packet && 'granted' in packet) resolve(packet.granted as number[]);
      else reject(error ?? new Error('no SUBACK'));
    });
  });
}

export interface ReceivedMessage {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

/** Every message the client receives from now on, in order. */
export function collectMessages(client: MqttClient): ReceivedMessage[] {
  const received: ReceivedMessage[] = [];
  client.on('message', (topic, payload, packet: IPublishPacket) => {
    received.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos });
  });
  return received;
}

export const payloadsOf = (received: ReceivedMessage[]): string[] => received.map((message) => message.payload);

/** expect.poll options for a message to arrive over loopback, also on a loaded machine */
export const DELIVERY_POLL = { timeout: 10_000, interval: 10 };

/** Waits until `messages` holds one with this payload. */
export async function waitForPayload(messages: ReceivedMessage[], payload: string, timeout = DELIVERY_POLL.timeout) {
  await expect.poll(() => payloadsOf(messages), { ...DELIVERY_POLL, timeout }).toContain(payload);
}

/**
 * Publishes a marker on `topic` and waits until `messages` has it: whatever was published before it
 * on that path has arrived by then, or never will.
 */
export async function barrier(publisher: MqttClient, messages: ReceivedMessage[], topic: string): Promise<void> {
  const marker = JSON.stringify({ marker: Math.random() });
  await publisher.publishAsync(topic, marker, { qos: 1 });
  await waitForPayload(messages, marker);
}
