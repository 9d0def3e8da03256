/**
 * The edge's sensor listener in the test process, as the agent wires it (group commit over a
 * real libSQL file), with any listener options, plus an independent reader of that file. Closed
 * at teardown (tests/helpers/teardown.ts); close() closes it earlier.
 */
import type { Client } from '@libsql/client';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { GroupCommitWriter } from '../../edge/ingest/group-commit.js';
import {
  startSensorListener,
  type SensorListener,
  type SensorListenerOptions,
} from '../../edge/ingest/sensor-listener.js';
import { EdgeMetrics } from '../../edge/metrics.js';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { tempDatabase } from './edge-temp-db.js';
import { testLogger } from './logger.js';
import { TEST_DEVICE_ID } from './records.js';
import { registerCleanup } from './teardown.js';

export interface TestListener {
  listener: SensorListener;
  store: TelemetryStore;
  metrics: EdgeMetrics;
  /** an independent connection to the database file */
  reader: Client;
  storedIds(): Promise<string[]>;
  rejected(): Promise<{ topic: string; reason: string; payload: string }[]>;
  close(): Promise<void>;
}

export type ExtraListenerOptions = Partial<Omit<SensorListenerOptions, 'writer' | 'store' | 'deviceId' | 'metrics'>>;

export async function startTestListener(options: ExtraListenerOptions = {}): Promise<TestListener> {
  const database = tempDatabase('edge-listener');
  const store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
  const writer = new GroupCommitWriter<TelemetryRecord>({ commit: (records) => store.insertReadings(records) });
  const metrics = new EdgeMetrics(() => store.countPending());
  let listener: SensorListener;
  try {
    listener = await startSensorListener({
      deviceId: TEST_DEVICE_ID,
      port: 0,
      logger: testLogger('edge-listener'),
      ...options,
      writer,
      store,
      metrics,
    });
  } catch (error) {
    await writer.close();
    await store.close();
    throw error;
  }
  const reader = database.openReader();
  const close = registerCleanup(async () => {
    await listener.close();
    await writer.close();
    await store.close();
  });
  return {
    listener,
    store,
    metrics,
    reader,
    async storedIds() {
      const result = await reader.execute('SELECT id FROM telemetry_data ORDER BY id');
      return result.rows.map((row) => row['id'] as string);
    },
    async rejected() {
      const result = await reader.execute('SELECT topic, reason, payload FROM rejected_readings ORDER BY rowid');
      return result.rows.map((row) => ({
        topic: row['topic'] as string,
        reason: row['reason'] as string,
        payload: row['payload'] as string,
      }));
    },
    close,
  };
}
