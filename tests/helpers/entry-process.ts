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
  /** the first JSON log line with this msg (also one logged before the call); fails if the process exits first */
  waitForLog(msg: string, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnEntryProcess(entry: string, env: Record<string, string>): EntryProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  registerCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  });
  let output = '';
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
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));

  return {
    child,
    output: () => output,
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
