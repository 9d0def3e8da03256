/**
 * The flooding device of the fairness test and of `npm run bench:fairness`, in its own process
 * (issue 7, item 2). A real flooding device is another machine: run in the process that also
 * times the probe, building and encrypting 4–12 MiB/s of JSON delayed the probe's own publishes
 * and its reading of sync/acks by the flooder's work, which the bridge never caused.
 *
 * `startFloodProcess` forks this file with IPC; the child runs `startFlood` (fairness-load.ts),
 * reports its counters every 100 ms, and on 'stop' disconnects, reports the final counters and
 * exits. The parent's `stop()` is idempotent and kills the child if it does not answer in 10 s.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFlood, type Flood, type FloodOptions, type FloodStats } from './fairness-load.js';

type ChildMessage =
  | { kind: 'stats'; stats: FloodStats }
  | { kind: 'stopped'; stats: FloodStats }
  | { kind: 'error'; message: string };

const EMPTY: FloodStats = { published: 0, stored: 0, retryLater: 0, offeredBytesPerS: 0 };

/** Starts the flood in a child process; resolves once it is connected and publishing. */
export async function startFloodProcess(options: FloodOptions): Promise<Flood> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    serialization: 'advanced', // the TLS material's Buffers arrive as Uint8Arrays
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let latest = EMPTY;
  let onStopped: ((stats: FloodStats) => void) | undefined;
  const started = new Promise<void>((resolve, reject) => {
    child.on('message', (message: ChildMessage) => {
      if (message.kind === 'error') reject(new Error(`flood process: ${message.message}`));
      else {
        latest = message.stats;
        resolve();
        if (message.kind === 'stopped') onStopped?.(message.stats);
      }
    });
    child.once('exit', (code) => reject(new Error(`flood process exited with code ${code} before it started`)));
  });
  child.send({ kind: 'start', options });
  await started;
  let stopping: Promise<FloodStats> | undefined;
  return {
    stats: () => latest,
    stop: () =>
      (stopping ??= new Promise<FloodStats>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(latest);
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        onStopped = (stats) => (latest = stats);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve(latest);
        });
        child.send({ kind: 'stop' });
      })),
  };
}

function runChild(): void {
  let flood: Flood | undefined;
  let reporter: NodeJS.Timeout | undefined;
  process.on('message', (message: { kind: 'start'; options: FloodOptions } | { kind: 'stop' }) => {
    if (message.kind === 'start') {
      const { clientOptions } = message.options;
      const asBuffer = (value: unknown): unknown => (value instanceof Uint8Array ? Buffer.from(value) : value);
      const options: FloodOptions = {
        ...message.options,
        clientOptions: clientOptions && {
          ...clientOptions,
          ca: asBuffer(clientOptions.ca) as Buffer,
          cert: asBuffer(clientOptions.cert) as Buffer,
          key: asBuffer(clientOptions.key) as Buffer,
        },
      };
      startFlood(options).then(
        (started) => {
          flood = started;
          process.send?.({ kind: 'stats', stats: started.stats() } satisfies ChildMessage);
          reporter = setInterval(
            () => process.send?.({ kind: 'stats', stats: started.stats() } satisfies ChildMessage),
            100,
          );
        },
        (error: unknown) => {
          process.send?.({ kind: 'error', message: String(error) } satisfies ChildMessage);
          process.exit(1);
        },
      );
      return;
    }
    clearInterval(reporter);
    void (flood?.stop() ?? Promise.resolve(EMPTY)).then((stats) => {
      process.send?.({ kind: 'stopped', stats } satisfies ChildMessage, () => process.exit(0));
    });
  });
  // the parent went away (killed, or a test's cleanup): stop flooding
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined) runChild();
