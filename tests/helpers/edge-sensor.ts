/** A sensor: a real mqtt.js client publishing readings with QoS 1 to the edge's local listener. */
import mqtt, { type MqttClient } from 'mqtt';

export async function connectSensor(
  port: number,
  clientId = `sensor-${Math.random().toString(16).slice(2)}`,
): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
  });
}

/** Publishes with QoS 1; resolves on PUBACK. */
export async function publishReading(sensor: MqttClient, topic: string, payload: unknown): Promise<void> {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  await sensor.publishAsync(topic, text, { qos: 1 });
}
