// Entry of the project's worker threads (the edge store, edge/store/worker-store.ts; the bridge's
// parse workers, bridge/ingest/parse-pool.ts). Node.js 20 applies neither tsx's --import hooks nor
// vitest's transform to a worker's entry module, so the worker registers tsx's loader itself
// (tsx 4, 'tsx/esm/api') and then loads the TypeScript entry it was given.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
