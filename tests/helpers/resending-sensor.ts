/**
 * A sensor that re-sends a reading itself when its publish fails: when the connection to the edge
 * drops (or a publish errors), every reading published without a PUBACK is published again, byte
 * for byte, on the next connection (the sensor keeps trying to reconnect). mqtt.js alone does not
 * guarantee that: publishes queued while it re-sends its session store after a reconnect fail with
 * "Connection closed" when that connection drops too.
 *
 * With `withIds: false` the sensor sends no reading id, only {value, unit, ts}: the edge derives a
 * name-based id from device, sensor, data type and ts, so a re-send must land on the same row.
 * `sent` maps each reading's expected id, computed with the edge's own pure normalizer, to its
 * payload. Closed at teardown.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { normalizeReading } from '../../edge/ingest/reading-normalizer.js';
import { topics } from '../../schemas/topics.js';
import { registerCleanup } from './teardown.js';

export interface ResendingSensor {
  sensorId: string;
  dataType: string;
  /** every reading published at least once: expected id → payload */
  sent: Map<string, string>;
  /** ids of the readings the edge acknowledged (PUBACK) */
  acknowledged: Set<string>;
  unacknowledged(): number;
  /** publishes of a reading after its first one */
  resends(): number;
  connected(): boolean;
  /** Publishes a new reading (only while connected; returns false otherwise). */
  publishNext(): boolean;
  close(): Promise<void>;
}

/** The id the edge gives a reading without `id` on `topic` (name-based when `ts` is present). */
export function expectedReadingId(deviceId: string, topic: string, payload: string): string {
  const normalized = normalizeReading(deviceId, topic, Buffer.from(payload), 0);
  if (!normalized.ok) throw new Error(`the edge would refuse ${payload} on ${topic}: ${normalized.reason}`);
  return normalized.record.id;
}

export async function connectResendingSensor(
  edgeUrl: string,
  deviceId: string,
  spec: { sensorId: string; dataType: string; unit: string; valueAt: (i: number) => number },
  options: { withIds: boolean },
): Promise<ResendingSensor> {
  const topic = topics.sensorReading(spec.sensorId, spec.dataType);
  const sent = new Map<string, string>();
  const acknowledged = new Set<string>();
  const toResend = new Set<string>();
  /** readings published on the current connection and not acknowledged yet */
  let unconfirmed = new Set<string>();
  let client: MqttClient | null = null;
  let closed = false;
  let resends = 0;
  let sequence = 0;
  let connections = 0;
  // one millisecond apart: every reading of this sensor has its own ts, so its own name-based id
  const firstTs = Date.now();

  const publish = (connection: MqttClient, id: string): void => {
    const payload = sent.get(id);
    if (payload === undefined) return;
    const waiting = unconfirmed;
    waiting.add(id);
    connection.publish(topic, payload, { qos: 1 }, (error) => {
      waiting.delete(id);
      if (!error) acknowledged.add(id);
      // re-sent on the next connection (a failed publish comes with a closed connection)
      else if (!acknowledged.has(id)) toResend.add(id);
    });
  };

  const onClose = (connection: MqttClient): void => {
    if (client !== connection) return;
    client = null;
    for (const id of unconfirmed) if (!acknowledged.has(id)) toResend.add(id);
    unconfirmed = new Set();
    connection.end(true);
    if (!closed) void connect();
  };

  const connect = async (): Promise<void> => {
    while (!closed) {
      connections += 1;
      const connection = mqtt.connect(edgeUrl, {
        clientId: `${spec.sensorId}-${connections}`,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      });
      connection.on('error', () => undefined); // every failure also closes the connection
      const connected = await new Promise<boolean>((resolve) => {
        connection.once('connect', () => resolve(true));
        connection.once('close', () => resolve(false));
      });
      if (connected && !closed && connection.connected) {
        client = connection;
        connection.on('close', () => onClose(connection));
        for (const id of [...toResend]) {
          toResend.delete(id);
          if (acknowledged.has(id)) continue;
          resends += 1;
          publish(connection, id);
        }
        return;
      }
      connection.end(true);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const close = registerCleanup(async () => {
    closed = true;
    const connection = client;
    client = null;
    await connection?.endAsync(true);
  });
  await connect();

  return {
    sensorId: spec.sensorId,
    dataType: spec.dataType,
    sent,
    acknowledged,
    unacknowledged: () => sent.size - acknowledged.size,
    resends: () => resends,
    connected: () => client !== null,
    publishNext() {
      if (client === null) return false;
      const i = sequence++;
      const reading = { value: spec.valueAt(i), unit: spec.unit, ts: firstTs + i };
      const payload = JSON.stringify(options.withIds ? { id: randomUUID(), ...reading } : reading);
      const id = expectedReadingId(deviceId, topic, payload);
      sent.set(id, payload);
      publish(client, id);
      return true;
    },
    close,
  };
}
