/** A libSQL file in its own temporary folder; its readers are closed and the folder removed at teardown. */
import { join } from 'node:path';
import { createClient, type Client } from '@libsql/client';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { TEST_DEVICE_ID } from './records.js';
import { registerCleanup } from './teardown.js';
import { tempDirectory } from './temp-dir.js';

export interface TempDatabase {
  path: string;
  url: string;
  /** an independent connection to the same file, for checking what is committed; closed at teardown */
  openReader(): Client;
}

export function tempDatabase(name = 'edge'): TempDatabase {
  const path = join(tempDirectory(name), `${name}.db`);
  return {
    path,
    url: `file:${path}`,
    openReader() {
      const reader = createClient({ url: `file:${path}`, concurrency: 1 });
      registerCleanup(() => reader.close());
      return reader;
    },
  };
}

export interface TempTelemetryStore {
  database: TempDatabase;
  /** the edge's store on the file, closed at teardown */
  store: TelemetryStore;
  reader: Client;
}

/** The edge's telemetry store on a fresh temporary file, with a reader of its own. */
export async function tempTelemetryStore(name: string): Promise<TempTelemetryStore> {
  const database = tempDatabase(name);
  const store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID });
  registerCleanup(() => store.close());
  return { database, store, reader: database.openReader() };
}
