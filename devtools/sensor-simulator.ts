/**
 * Simulated sensors: real mqtt.js clients that publish readings with QoS 1 to an edge agent's
 * local listener and remember every reading the edge acknowledged (PUBACK = stored in libSQL).
 * With credentials they log in as a sensor user (the listener's SENSOR_USERS_FILE or
 * SENSOR_USERNAME/SENSOR_PASSWORD_FILE).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { newId } from '../common/ids.js';
import { topics } from '../schemas/topics.js';

export interface SensorSpec {
  sensorId: string;
  dataType: string;
  unit: string;
  /** value generator; `i` is the reading's sequence number */
  valueAt: (i: number) => number;
}

export interface AcknowledgedReading {
  id: string;
  sensorId: string;
  publishedAtMs: number;
  acknowledgedAtMs: number;
}

export interface SimulatedSensor {
  spec: SensorSpec;
  acknowledged: AcknowledgedReading[];
  /** readings published but not yet acknowledged */
  inFlight(): number;
  /** publishes one reading; resolves when the edge acknowledged it */
  publishReading(): Promise<AcknowledgedReading>;
  /** publishes a raw payload (for malformed-input demonstrations); resolves on PUBACK */
  publishRaw(payload: string): Promise<void>;
  close(): Promise<void>;
}

export interface SensorCredentials {
  username: string;
  password: string;
}

export async function connectSensor(
  edgeUrl: string,
  spec: SensorSpec,
  credentials?: SensorCredentials,
): Promise<SimulatedSensor> {
  const client: MqttClient = await mqtt.connectAsync(edgeUrl, {
    clientId: `sensor-${spec.sensorId}-${newId().slice(0, 8)}`,
    clean: true,
    reconnectPeriod: 500,
    ...(credentials ? { username: credentials.username, password: credentials.password } : {}),
  });
  const acknowledged: AcknowledgedReading[] = [];
  let sequence = 0;
  let inFlight = 0;
  const topic = topics.sensorReading(spec.sensorId, spec.dataType);

  return {
    spec,
    acknowledged,
    inFlight: () => inFlight,
    async publishReading() {
      const i = sequence++;
      const id = newId();
      const publishedAtMs = Date.now();
      const payload = JSON.stringify({ id, value: spec.valueAt(i), unit: spec.unit, ts: publishedAtMs });
      inFlight++;
      try {
        await client.publishAsync(topic, payload, { qos: 1 });
      } finally {
        inFlight--;
      }
      const reading = { id, sensorId: spec.sensorId, publishedAtMs, acknowledgedAtMs: Date.now() };
      acknowledged.push(reading);
      return reading;
    },
    async publishRaw(payload: string) {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    async close() {
      await client.endAsync();
    },
  };
}

/** The usual set of sensors of one simulated device. */
export function standardSensors(count: number): SensorSpec[] {
  const kinds = [
    { dataType: 'temperature', unit: 'C', base: 21, swing: 4 },
    { dataType: 'humidity', unit: '%', base: 45, swing: 10 },
    { dataType: 'pressure', unit: 'hPa', base: 1013, swing: 6 },
    { dataType: 'vibration', unit: 'mm/s', base: 2, swing: 1.5 },
  ];
  return Array.from({ length: count }, (_, n) => {
    const kind = kinds[n % kinds.length]!;
    return {
      sensorId: `${kind.dataType.slice(0, 4)}-${n + 1}`,
      dataType: kind.dataType,
      unit: kind.unit,
      valueAt: (i: number) => Math.round((kind.base + kind.swing * Math.sin((i + n * 7) / 10)) * 100) / 100,
    };
  });
}
