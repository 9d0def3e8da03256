/** Observing an MQTT client in tests: SUBACK codes and the messages it receives. */
import type { IPublishPacket, MqttClient } from 'mqtt';

/** The granted QoS codes of one SUBSCRIBE (128 = refused), whether or not mqtt.js calls it an error. */
export function subscribeGranted(client: MqttClient, filters: string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(filters, { qos: 1 }, (error, _grants, packet) => {
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

/** Polls `condition` every 10 ms; fails naming `what` after timeoutMs. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
