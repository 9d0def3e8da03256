/**
 * A throwaway Redis for tests: the `redis-server` on PATH, on a free port of 127.0.0.1, no RDB
 * snapshots and no AOF, its working directory in a temporary folder. Never the machine's Redis.
 * Stopped (and its folder removed) at teardown; close() stops it earlier, e.g. to test an outage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../devtools/free-port.js';
import { registerCleanup } from './teardown.js';

export interface TestRedis {
  /** redis://127.0.0.1:<port>/0 (with the password when one was set) */
  url: string;
  port: number;
  /** INFO <section> as key → value, e.g. info('errorstats')['errorstat_WRONGPASS'] = 'count=3' */
  info(section: string): Promise<Record<string, string>>;
  close(): Promise<void>;
}

export interface TestRedisOptions {
  /** requirepass */
  password?: string;
  /** default 10 s */
  startTimeoutMs?: number;
}

const ATTEMPTS = 3; // the free port can be taken between freePort() and redis-server binding it

export async function startTestRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-edge-sync-redis-'));
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const port = await freePort();
    const child = spawnRedis(port, dir, options.password);
    try {
      await waitUntilAnswering(child, port, options.password, options.startTimeoutMs ?? 10_000);
    } catch (error) {
      lastError = error as Error;
      await stopProcess(child);
      continue;
    }
    const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
    return {
      url: `redis://${auth}127.0.0.1:${port}/0`,
      port,
      info: (section) => info(port, options.password, section),
      close: registerCleanup(async () => {
        await stopProcess(child);
        await rm(dir, { recursive: true, force: true });
      }),
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`could not start redis-server after ${ATTEMPTS} attempts: ${lastError?.message}`, {
    cause: lastError,
  });
}

interface RedisProcess {
  process: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function spawnRedis(port: number, dir: string, password: string | undefined): RedisProcess {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
  ];
  if (password !== undefined) args.push('--requirepass', password);
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => output.push(chunk.toString());
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', (error) => {
      output.push(`cannot run redis-server: ${error.message}`);
      resolve(null);
    });
  });
  return { process: child, output, exited };
}

/** Polls over a raw socket until the Redis on the port answers and is the process we started. */
async function waitUntilAnswering(
  redis: RedisProcess,
  port: number,
  password: string | undefined,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void redis.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`redis-server exited on port ${port}: ${redis.output.join('').trim().slice(-500)}`);
    const pid = await serverPid(port, password);
    if (pid !== undefined && pid === redis.process.pid) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms`);
}

/** The process_id from INFO server; undefined while nothing (or something else) answers. */
function serverPid(port: number, password: string | undefined): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1_000, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () =>
      socket.write(`${password === undefined ? '' : command('AUTH', password)}${command('INFO', 'server')}`),
    );
    socket.on('data', (data) => {
      reply += data.toString();
      const match = /process_id:(\d+)\r\n/.exec(reply);
      if (match) done(Number(match[1]));
      else if (/^-/m.test(reply)) done(undefined); // LOADING, NOAUTH, …: not ready yet
    });
  });
}

/** INFO <section>, parsed, asked over a raw socket like the start-up check. */
function info(port: number, password: string | undefined, section: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(5_000, () => socket.destroy(new Error(`redis-server on port ${port} did not answer INFO`)));
    socket.once('error', reject);
    socket.once('connect', () =>
      socket.write(`${password === undefined ? '' : command('AUTH', password)}${command('INFO', section)}`),
    );
    socket.on('data', (data) => {
      reply += data.toString();
      const bulk = /\$(\d+)\r\n/.exec(reply);
      if (/^-/m.test(reply)) {
        socket.destroy();
        reject(new Error(`redis-server refused INFO: ${reply.trim()}`));
      } else if (bulk && reply.length >= bulk.index + bulk[0].length + Number(bulk[1])) {
        socket.destroy();
        const body = reply.slice(bulk.index + bulk[0].length, bulk.index + bulk[0].length + Number(bulk[1]));
        const fields = body.split('\r\n').filter((line) => line.includes(':') && !line.startsWith('#'));
        resolve(
          Object.fromEntries(
            fields.map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
          ),
        );
      }
    });
  });
}

/** A command in RESP (any bytes allowed in the arguments, unlike the inline form). */
function command(...args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

async function stopProcess(redis: RedisProcess): Promise<void> {
  const child = redis.process;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await redis.exited;
  clearTimeout(killed);
}
