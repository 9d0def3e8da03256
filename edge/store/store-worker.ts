/**
 * The store worker thread: owns the edge's one libSQL connection (a SqlTelemetryStore) and runs
 * the operations the event loop sends it, one at a time in arrival order (the store's
 * SerialQueue), answering each with its result or error. See worker-store.ts for why.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError, type StoreRequest, type StoreResponse } from './store-protocol.js';
import { DOWNSTREAM_OPERATIONS } from './downstream-store.js';
import { openEdgeStores } from './edge-stores.js';
import { STORE_OPERATIONS, type OpenTelemetryStoreOptions } from './telemetry-store.js';

const port = parentPort;
if (port === null) throw new Error('edge/store/store-worker.ts runs only as a worker thread');
const { options } = workerData as { options: OpenTelemetryStoreOptions };
const send = (response: StoreResponse) => port.postMessage(response);
const operations: ReadonlySet<string> = new Set(STORE_OPERATIONS);
/** G6: command_queue and device_config operations, on the same connection (./edge-stores.ts) */
const downstreamOperations: ReadonlySet<string> = new Set(DOWNSTREAM_OPERATIONS);

try {
  const { telemetry: store, downstream } = await openEdgeStores(options);
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
    const target: object | undefined = operations.has(request.operation)
      ? store
      : downstreamOperations.has(request.operation)
        ? downstream
        : undefined;
    if (target === undefined) {
      send({ kind: 'error', id: request.id, error: { name: 'Error', message: `unknown store operation` } });
      return;
    }
    const operation = (target as Record<string, unknown>)[request.operation] as (
      ...args: unknown[]
    ) => Promise<unknown>;
    // through a promise, so an operation that throws before its first await (a bad argument)
    // answers that one call with its error instead of killing the thread and every later call
    Promise.resolve()
      .then(() => operation.apply(target, request.args))
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
