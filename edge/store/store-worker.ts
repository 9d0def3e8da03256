/**
 * The store worker thread: owns the edge's one libSQL connection (a SqlTelemetryStore) and runs
 * the operations the event loop sends it, one at a time in arrival order (the store's
 * SerialQueue), answering each with its result or error. See worker-store.ts for why.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError, type StoreRequest, type StoreResponse } from './store-protocol.js';
import { openTelemetryStore, STORE_OPERATIONS, type OpenTelemetryStoreOptions } from './telemetry-store.js';

const port = parentPort;
if (port === null) throw new Error('edge/store/store-worker.ts runs only as a worker thread');
const { options } = workerData as { options: OpenTelemetryStoreOptions };
const send = (response: StoreResponse) => port.postMessage(response);
const operations: ReadonlySet<string> = new Set(STORE_OPERATIONS);

try {
  const store = await openTelemetryStore(options);
  port.on('message', (request: StoreRequest) => {
    if (request.operation === 'close') {
      void store.close().then(
        () => {
          send({ kind: 'result', id: request.id, value: undefined });
          port.close(); // nothing else keeps the thread alive: it ends
        },
        (error: unknown) => send({ kind: 'error', id: request.id, error: serializeError(error) }),
      );
      return;
    }
    if (!operations.has(request.operation)) {
      send({ kind: 'error', id: request.id, error: { name: 'Error', message: `unknown store operation` } });
      return;
    }
    const operation = store[request.operation] as (...args: unknown[]) => Promise<unknown>;
    // through a promise, so an operation that throws before its first await (a bad argument)
    // answers that one call with its error instead of killing the thread and every later call
    Promise.resolve()
      .then(() => operation.apply(store, request.args))
      .then(
        (value) => send({ kind: 'result', id: request.id, value }),
        (error: unknown) => send({ kind: 'error', id: request.id, error: serializeError(error) }),
      );
  });
  send({ kind: 'ready' });
} catch (error) {
  send({ kind: 'open-failed', error: serializeError(error) });
  port.close();
}
