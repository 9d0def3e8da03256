/**
 * A process entry point (broker/main.ts, bridge/main.ts, edge/main.ts) run as its own process
 * through tsx, so that a test can really crash it (SIGKILL). Its output is kept for assertions
 * and failure messages; the process is killed at teardown if still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LogLine } from './logger.js';
import { registerCleanup } from './teardown.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface EntryProcess {
  child: ChildProcess;
  /** stdout and stderr so far */
  output(): string;
  /** stderr alone so far */
  stderr(): string;
  /** every JSON log line on stdout so far, in order */
  logs: LogLine[];
  /** how the process ended (resolved once its output has been read to the end) */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** the first JSON log line with this msg (also one logged before the call); fails if the process exits first */
  waitForLog(msg: string, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
}

export interface EntryProcessOptions {
  /**
   * 'inherit' (default): the test's environment plus `env`. 'isolated': only PATH, HOME and TMPDIR
   * of it plus `env`, so that nothing leaks from the test's environment into a configuration test.
   */
  environment?: 'inherit' | 'isolated';
}

const ISOLATED_ENV_KEPT = ['PATH', 'HOME', 'TMPDIR'];

export function spawnEntryProcess(
  entry: string,
  env: Record<string, string>,
  options: EntryProcessOptions = {},
): EntryProcess {
  const base =
    options.environment === 'isolated'
      ? Object.fromEntries(
          ISOLATED_ENV_KEPT.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]])),
        )
      : process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // 'close', not 'exit': by then stdout and stderr have been read to the end
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  registerCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  });
  let output = '';
  let stderr = '';
  const logLines: LogLine[] = [];
  let pending = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('{')) logLines.push(JSON.parse(line) as LogLine);
    for (const waiter of waiters) waiter();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    stderr += chunk.toString();
  });

  return {
    child,
    output: () => output,
    stderr: () => stderr,
    logs: logLines,
    exited,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
    waitForLog: (msg, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = logLines.find((line) => line.msg === msg);
          if (found === undefined) return;
          done();
          resolve(found);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no '${msg}' from ${entry} within ${timeoutMs} ms:\n${output}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        void exited.then(() => {
          if (!waiters.has(check)) return;
          done();
          reject(new Error(`${entry} exited (${child.exitCode ?? child.signalCode}) before '${msg}':\n${output}`));
        });
        waiters.add(check);
        check();
      }),
  };
}
