/**
 * A TelemetryStore whose SQLite work runs on a worker thread (node:worker_threads), not on the
 * event loop that answers the sensors.
 *
 * Why: @libsql/client 0.18 runs a file: database synchronously on the calling thread, fsync
 * included (synchronous=FULL). On the agent's one event loop every claim, ack, count and prune
 * therefore held up the sensor listener: while a 1M-reading backlog drained, sensors got 465
 * PUBACKs/s instead of 21,700/s offline (35/s at 3.2M). Pinning the claim's index (telemetry-
 * store.ts) made each step O(batch), but a step still costs milliseconds of SQLite and an fsync,
 * ten or more times a second during a drain, all on that loop (the pending count alone: ~150 ms
 * at 3M). With the store on its own thread the event loop only parses MQTT, sends PUBACKs and
 * posts messages, and SQLite can use the second core. scripts/bench-drain.ts runs both placements
 * back to back (docs/capacity.md): while a 3M backlog drained, sensors got 0–4% of their offline
 * rate with SQLite on the event loop and 44–64% with the worker (25–92% over all backlog sizes),
 * PUBACK p99 146–360 ms instead of 1.0–1.7 s. Bounding each step instead (claims are O(batch)
 * now) would still leave every fsync and every count on the loop that answers sensors, and
 * SQLite would not get the second core.
 *
 * Order: requests are posted in call order and the worker runs them one at a time in that order
 * (its SerialQueue), so the store behaves as the in-thread one does. Errors come back with their
 * SQLite code (store-protocol.ts). If the worker dies, every waiting call and every later call
 * fails with that reason; close() is idempotent and safe after such a death.
 */
import { Worker } from 'node:worker_threads';
import { DOWNSTREAM_OPERATIONS, type DownstreamOperation, type DownstreamStore } from './downstream-store.js';
import type { EdgeStores } from './edge-stores.js';
import { deserializeError, type StoreRequest, type StoreResponse } from './store-protocol.js';
import {
  STORE_OPERATIONS,
  type OpenTelemetryStoreOptions,
  type StoreOperation,
  type TelemetryStore,
} from './telemetry-store.js';

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

const BOOT = new URL('../../common/ts-worker-boot.js', import.meta.url);
const ENTRY = new URL('./store-worker.ts', import.meta.url).href;

export async function openWorkerTelemetryStore(options: OpenTelemetryStoreOptions): Promise<TelemetryStore> {
  return (await openWorkerEdgeStores(options)).telemetry;
}

/**
 * Both stores of ./edge-stores.ts, served by one worker (one connection): the downstream store's
 * calls (G6) queue with the telemetry store's in the worker's SerialQueue.
 */
export async function openWorkerEdgeStores(options: OpenTelemetryStoreOptions): Promise<EdgeStores> {
  const worker = new Worker(BOOT, { workerData: { entry: ENTRY, options }, name: 'edge-store' });
  const waiting = new Map<number, Waiting>();
  let nextId = 1;
  let dead: Error | null = null;
  let exited = false;
  const exit = new Promise<void>((resolve) => worker.once('exit', () => resolve()));

  const die = (reason: Error) => {
    dead ??= reason;
    for (const call of waiting.values()) call.reject(dead);
    waiting.clear();
  };
  worker.on('error', (error) => die(new Error(`the edge store worker failed: ${error.message}`, { cause: error })));
  void exit.then(() => {
    exited = true;
    die(new Error('the edge store worker has stopped'));
  });

  await new Promise<void>((resolve, reject) => {
    const onStartup = (response: StoreResponse) => {
      if (response.kind === 'ready') resolve();
      else if (response.kind === 'open-failed') reject(deserializeError(response.error));
    };
    worker.once('message', onStartup);
    void exit.then(() => reject(dead ?? new Error('the edge store worker stopped while opening the database')));
  });

  worker.on('message', (response: StoreResponse) => {
    if (response.kind !== 'result' && response.kind !== 'error') return;
    const call = waiting.get(response.id);
    if (call === undefined) return;
    waiting.delete(response.id);
    if (response.kind === 'result') call.resolve(response.value);
    else call.reject(deserializeError(response.error));
  });

  let closing: Promise<void> | null = null;
  const call = (operation: StoreOperation | DownstreamOperation | 'close', args: unknown[]): Promise<unknown> => {
    if (dead !== null) return Promise.reject(dead);
    if (closing !== null && operation !== 'close') return Promise.reject(new Error('the edge store is closed'));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, operation, args } satisfies StoreRequest);
    });
  };

  const store = {
    deviceId: options.deviceId,
    close: () =>
      (closing ??= (async () => {
        // the worker answers every call posted before this one, closes the database and ends
        await call('close', []).catch(() => undefined);
        if (!exited) await worker.terminate();
        await exit;
      })()),
  } as Record<string, unknown>;
  for (const operation of STORE_OPERATIONS) {
    store[operation] = (...args: unknown[]) => call(operation, args);
  }
  const downstream: Record<string, unknown> = {};
  for (const operation of DOWNSTREAM_OPERATIONS) {
    downstream[operation] = (...args: unknown[]) => call(operation, args);
  }
  return { telemetry: store as unknown as TelemetryStore, downstream: downstream as unknown as DownstreamStore };
}
