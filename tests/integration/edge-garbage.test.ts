/**
 * A sensor that publishes garbage at full speed, through the real listener (embedded Aedes), a
 * real mqtt.js sensor and a real libSQL file: every payload is acknowledged and refused (G5),
 * rejected_readings stays within its bounds with the dropped ones counted (G8), and the log gets
 * one line for the first refusal and one with the count at the end of the interval, not one each.
 */
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { GroupCommitWriter } from '../../edge/ingest/group-commit.js';
import { startSensorListener, type SensorListener } from '../../edge/ingest/sensor-listener.js';
import { openWorkerTelemetryStore } from '../../edge/store/worker-store.js';
import type { TelemetryStore } from '../../edge/store/telemetry-store.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { connectSensor, publishReading } from '../helpers/edge-sensor.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';

let database: TempDatabase;
let store: TelemetryStore;
let writer: GroupCommitWriter<TelemetryRecord>;
let listener: SensorListener;
let sensor: MqttClient;
let lines: { level: number; msg: string; count?: number }[];

beforeEach(async () => {
  database = tempDatabase('edge-garbage');
  store = await openWorkerTelemetryStore({
    url: database.url,
    deviceId: TEST_DEVICE_ID,
    rejectedReadings: { maxRows: 50, maxBytes: 512 * 1024 },
  });
  writer = new GroupCommitWriter<TelemetryRecord>({ commit: (records) => store.insertReadings(records) });
  lines = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  listener = await startSensorListener({
    deviceId: TEST_DEVICE_ID,
    port: 0,
    writer,
    store,
    logger: pino({ level: 'warn' }, sink),
  });
  sensor = await connectSensor(listener.port);
});

afterEach(async () => {
  await sensor.endAsync(true);
  await listener.close();
  await writer.close();
  await store.close();
});

describe('garbage at full speed', () => {
  it('is acknowledged and refused, kept within bounds with the dropped ones counted, and logged once per interval', async () => {
    let closed = false;
    sensor.on('close', () => (closed = true));
    const payload = `{"value": ${'9'.repeat(16 * 1024 - 20)}`; // 16 KiB that is not JSON
    await Promise.all(
      Array.from({ length: 300 }, () => publishReading(sensor, 'sensors/boiler-1/temperature', payload)),
    );
    expect(closed).toBe(false);
    const reader = database.openReader();
    const kept = await reader.execute('SELECT count(*) AS n FROM rejected_readings');
    const fitting = Math.floor((512 * 1024) / Buffer.byteLength(payload)); // the byte bound bites before 50 rows
    expect(Number(kept.rows[0]?.['n'])).toBe(fitting);
    expect(await store.readCounters()).toMatchObject({ droppedRejectedReadings: 300 - fitting });
    expect(lines.filter((line) => line.level === 40).map((line) => line.count)).toEqual([1]);

    await listener.close(); // reports what is still counted
    expect(lines.filter((line) => line.level === 40).map((line) => line.count)).toEqual([1, 299]);
  });
});
