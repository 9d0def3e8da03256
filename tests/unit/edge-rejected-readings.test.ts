/**
 * G8 for refused sensor input: rejected_readings keeps at most its rows and bytes, drops the
 * oldest first and counts what it dropped, so garbage cannot fill the device's disk.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import {
  DEFAULT_REJECTED_READINGS_LIMITS,
  openTelemetryStore,
  type TelemetryStore,
} from '../../edge/store/telemetry-store.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';

let database: TempDatabase;
let store: TelemetryStore;
let reader: Client;

beforeEach(() => {
  database = tempDatabase('edge-rejected');
  reader = database.openReader();
});

afterEach(async () => {
  await store.close();
});

const reject = (receivedAt: number, payload: string) =>
  store.recordRejectedReading({ receivedAt, topic: 'sensors/s/t', payload, reason: 'not JSON' });

async function kept(): Promise<{ rows: number; bytes: number; oldest: number }> {
  const result = await reader.execute(
    'SELECT count(*) AS n, total(length(CAST(payload AS BLOB))) AS bytes, min(received_at) AS oldest FROM rejected_readings',
  );
  const row = result.rows[0]!;
  return { rows: Number(row['n']), bytes: Number(row['bytes']), oldest: Number(row['oldest']) };
}

describe('rejected_readings bounds', () => {
  it('keeps at most maxRows refused payloads, dropping the oldest first, and counts the dropped ones', async () => {
    store = await openTelemetryStore({
      url: database.url,
      deviceId: TEST_DEVICE_ID,
      rejectedReadings: { maxRows: 10, maxBytes: 1024 * 1024 },
    });
    for (let i = 0; i < 25; i += 1) await reject(i, `{garbage ${i}`);
    expect(await kept()).toMatchObject({ rows: 10, oldest: 15 });
    expect(await store.readCounters()).toEqual({ droppedPendingReadings: 0, droppedRejectedReadings: 15 });
  });

  it('keeps the database small when 2,000 invalid 16 KiB readings arrive (it grew to 35 MB before)', async () => {
    store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
    const garbage = (i: number) => `${i}:${'x'.repeat(MAX_SENSOR_PAYLOAD_BYTES)}`.slice(0, MAX_SENSOR_PAYLOAD_BYTES);
    for (let i = 0; i < 2000; i += 1) await reject(i, garbage(i));
    const { rows, bytes, oldest } = await kept();
    expect(bytes).toBeLessThanOrEqual(DEFAULT_REJECTED_READINGS_LIMITS.maxBytes);
    expect(rows).toBe(Math.floor(DEFAULT_REJECTED_READINGS_LIMITS.maxBytes / MAX_SENSOR_PAYLOAD_BYTES));
    expect(oldest).toBe(2000 - rows);
    expect((await store.readCounters()).droppedRejectedReadings).toBe(2000 - rows);
    const pages = await reader.execute('PRAGMA page_count');
    const pageSize = await reader.execute('PRAGMA page_size');
    const fileBytes = Number(pages.rows[0]?.['page_count']) * Number(pageSize.rows[0]?.['page_size']);
    // the kept payloads plus the schema and the pages freed by dropped rows, reused rather than added
    expect(fileBytes).toBeLessThan(2 * DEFAULT_REJECTED_READINGS_LIMITS.maxBytes);
  }, 60_000);

  it('counts what it holds again after a rolled-back insert and after pruning', async () => {
    store = await openTelemetryStore({
      url: database.url,
      deviceId: TEST_DEVICE_ID,
      rejectedReadings: { maxRows: 3, maxBytes: 1024 * 1024 },
    });
    for (let i = 0; i < 3; i += 1) await reject(i, 'x');
    await store.pruneHistory({ syncedBefore: 0, diagnosticsBefore: 2 }, 100); // removes the first two
    for (let i = 3; i < 5; i += 1) await reject(i, 'x');
    expect(await kept()).toMatchObject({ rows: 3, oldest: 2 });
    expect((await store.readCounters()).droppedRejectedReadings).toBe(0);
    await reject(5, 'x');
    expect(await kept()).toMatchObject({ rows: 3, oldest: 3 });
    expect((await store.readCounters()).droppedRejectedReadings).toBe(1);
  });
});
