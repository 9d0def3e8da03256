/**
 * Worker threads that parse the bridge's large telemetry messages (G7): ./parse-worker.ts runs
 * the validation, hashing and SQL formatting of a message off the event loop, which then only
 * deserializes the result (about 2.5 ms for 1000 readings instead of 20–25 ms of work) and keeps
 * serving every other device's transactions meanwhile. On two cores the machine was ~70% busy
 * during the fairness bench's flood: the worker's share runs on the idle part instead of in line
 * with the other devices' statements.
 *
 * A request goes to the worker with the fewest requests waiting; each worker answers in order.
 * The payload is copied once into a transferable buffer (the MQTT payload may be a view into a
 * larger buffer that must not move). If a worker fails or exits, its waiting requests, and every
 * later one when no worker is left, are parsed on the event loop in slices instead
 * (parseTelemetryMessageInSlices): nothing is lost, it is only slower; logged once per worker.
 * close() is idempotent; requests still waiting are then parsed in slices as well.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../common/logger.js';
import type { ParseRequest, ParseResponse } from './parse-worker.js';
import { parseTelemetryMessageInSlices, type ParsedTelemetryMessage } from './telemetry-message.js';
import { rememberTuples } from './telemetry-writer.js';

const BOOT = new URL('../../common/ts-worker-boot.js', import.meta.url);
const ENTRY = new URL('./parse-worker.ts', import.meta.url).href;

export interface ParsePool {
  /**
   * Reads a message like parseTelemetryMessage, on a worker thread. Rejects only if the parse
   * itself throws on the event loop too (no input is known to): the pipeline then releases the
   * message unacknowledged.
   */
  parse(topic: string, payload: Buffer): Promise<ParsedTelemetryMessage>;
  /** Stops the workers; idempotent. */
  close(): Promise<void>;
}

interface Pending {
  topic: string;
  payload: Buffer;
  resolve: (parsed: ParsedTelemetryMessage) => void;
  reject: (error: unknown) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  alive: boolean;
}

export interface ParsePoolOptions {
  workers: number;
  logger: Logger;
  /** the worker's module (a URL); default ./parse-worker.ts. For tests of a failing worker. */
  entry?: string;
}

export function startParsePool(options: ParsePoolOptions): ParsePool {
  let nextId = 1;
  let closing: Promise<void> | undefined;
  const onLoop = (request: Pending) => {
    parseTelemetryMessageInSlices(request.topic, request.payload).then(request.resolve, request.reject);
  };
  const slots: Slot[] = Array.from({ length: Math.max(0, options.workers) }, (_, index) => {
    const worker = new Worker(BOOT, { workerData: { entry: options.entry ?? ENTRY }, name: `bridge-parse-${index}` });
    const slot: Slot = { worker, pending: new Map(), alive: true };
    const fail = (reason: string) => {
      if (!slot.alive) return;
      slot.alive = false;
      if (closing === undefined)
        options.logger.error({ worker: index, reason }, 'parse worker lost; parsing on the event loop');
      for (const request of slot.pending.values()) onLoop(request);
      slot.pending.clear();
    };
    worker.on('message', (response: ParseResponse) => {
      const request = slot.pending.get(response.id);
      if (request === undefined) return;
      slot.pending.delete(response.id);
      if (response.kind === 'failed') {
        options.logger.error(
          { worker: index, reason: response.message },
          'parse worker failed a message; parsing it on the event loop',
        );
        onLoop(request);
        return;
      }
      if (response.parsed.kind === 'batch') rememberTuples(response.parsed.records, response.tuples);
      request.resolve(response.parsed);
    });
    worker.on('error', (error) => fail(error.message));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    return slot;
  });

  return {
    parse: (topic, payload) =>
      new Promise<ParsedTelemetryMessage>((resolve, reject) => {
        const request: Pending = { topic, payload, resolve, reject };
        const live = slots.filter((slot) => slot.alive);
        if (closing !== undefined || live.length === 0) return onLoop(request);
        const slot = live.reduce((least, candidate) =>
          candidate.pending.size < least.pending.size ? candidate : least,
        );
        const id = nextId++;
        slot.pending.set(id, request);
        const copy = new Uint8Array(payload); // a copy of its own, moved to the worker without another copy
        slot.worker.postMessage({ id, topic, payload: copy } satisfies ParseRequest, [copy.buffer]);
      }),
    close: () =>
      (closing ??= (async () => {
        await Promise.all(slots.map((slot) => slot.worker.terminate()));
      })()),
  };
}
