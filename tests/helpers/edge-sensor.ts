/** Sensors: real mqtt.js clients publishing readings with QoS 1 to an edge's local listener; ended at teardown. */
import type { MqttClient } from 'mqtt';
import {
  connectSensor as connectSimulatedSensor,
  type SensorSpec,
  type SimulatedSensor,
} from '../../devtools/sensor-simulator.js';
import { connectClient } from './mqtt-client.js';
import { registerCleanup } from './teardown.js';

export function connectSensor(
  port: number,
  clientId = `sensor-${Math.random().toString(16).slice(2)}`,
): Promise<MqttClient> {
  return connectClient(`mqtt://127.0.0.1:${port}`, { clientId, clean: true });
}

/** Publishes with QoS 1; resolves on PUBACK. */
export async function publishReading(sensor: MqttClient, topic: string, payload: unknown): Promise<void> {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  await sensor.publishAsync(topic, text, { qos: 1 });
}

/** Simulated sensors (devtools/sensor-simulator.ts) connected to an edge's listener at `edgeUrl`; closed at teardown. */
export function connectSimulatedSensors(edgeUrl: string, specs: SensorSpec[]): Promise<SimulatedSensor[]> {
  return Promise.all(
    specs.map(async (spec) => {
      const sensor = await connectSimulatedSensor(edgeUrl, spec);
      registerCleanup(() => sensor.close());
      return sensor;
    }),
  );
}

/** the connect timeout of a simulated sensor: mqtt.js's default, which devtools/sensor-simulator.ts keeps */
export const SIMULATED_SENSOR_CONNECT_MS = 30_000;
