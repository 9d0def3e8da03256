/**
 * Third-party MQTT clients for integration tests, so the edge's sensor listener is checked against
 * more than the mqtt.js it was written with: Eclipse Mosquitto's command-line clients
 * (mosquitto_pub, mosquitto_sub, 2.0 on the PATH) and Eclipse paho-mqtt 1.6.1 under
 * /usr/bin/python3 (Debian's package; the pyenv python3 on the PATH has no paho), driven through
 * tests/helpers/paho_client.py.
 *
 * Every helper spawns a real process talking MQTT 3.1.1 over a real socket and reports what the
 * client itself observed (exit code, CONNACK code, SUBACK codes, PUBACKs, messages), never what the
 * server believes it sent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';

export interface Credentials {
  username: string;
  password: string;
}

export interface ExitedProcess {
  code: number | null;
  stdout: string;
  stderr: string;
}

const PAHO_CLIENT = join(import.meta.dirname, 'paho_client.py');
const SYSTEM_PYTHON = '/usr/bin/python3';

function credentialArgs(credentials: Credentials | undefined, flags: { user: string; password: string }): string[] {
  return credentials ? [flags.user, credentials.username, flags.password, credentials.password] : [];
}

/** PEM file paths for mosquitto's TLS: the CA to verify the server with, and an optional client certificate. */
export interface MosquittoTls {
  caPath: string;
  certPath?: string;
  keyPath?: string;
}

function tlsArgs(tls: MosquittoTls | undefined): string[] {
  if (!tls) return [];
  const args = ['--cafile', tls.caPath];
  if (tls.certPath && tls.keyPath) args.push('--cert', tls.certPath, '--key', tls.keyPath);
  return args;
}

/** Runs a command to its end (killed after timeoutMs), with `input` on stdin. */
function run(command: string, args: string[], input: string | Buffer = '', timeoutMs = 20_000): Promise<ExitedProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // the client may exit before reading all of it
    child.stdin.end(input);
  });
}

export interface MosquittoPubOptions {
  port: number;
  topic: string;
  /** sent from stdin (-s), so any size and any bytes */
  payload: string | Buffer;
  qos?: 0 | 1;
  retain?: boolean;
  credentials?: Credentials;
  tls?: MosquittoTls;
}

/** One mosquitto_pub run; exit code 0 means the broker accepted the CONNECT and (QoS 1) sent the PUBACK. */
export function mosquittoPub(options: MosquittoPubOptions): Promise<ExitedProcess> {
  const args = ['-h', '127.0.0.1', '-p', String(options.port), '-t', options.topic, '-q', String(options.qos ?? 1)];
  if (options.retain) args.push('-r');
  args.push(...credentialArgs(options.credentials, { user: '-u', password: '-P' }), ...tlsArgs(options.tls), '-s');
  return run('mosquitto_pub', args, options.payload);
}

export interface ReceivedByClient {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

export interface RunningSubscriber {
  /** what the client printed so far, in order */
  readonly messages: ReceivedByClient[];
  /** the SUBACK's return codes, once it arrived (128: refused) */
  readonly granted: number[] | undefined;
  /** the CONNACK's return code, once it arrived */
  readonly connack: number | undefined;
  /** resolves with the SUBACK codes */
  subscribed(): Promise<number[]>;
  /** resolves once a message matching `predicate` arrived */
  received(what: string, predicate: (message: ReceivedByClient) => boolean): Promise<ReceivedByClient>;
  /** resolves with the exit, after terminating the client if it still runs */
  stop(): Promise<ExitedProcess>;
}

function subscriber(child: ChildProcess, parseLine: (line: string, state: SubscriberState) => void): RunningSubscriber {
  const state: SubscriberState = { messages: [], granted: undefined, connack: undefined };
  let stdout = '';
  let stderr = '';
  let buffered = '';
  let exit: ExitedProcess | undefined;
  const exited = new Promise<ExitedProcess>((resolve) =>
    child.on('close', (code) => {
      exit = { code, stdout, stderr };
      resolve(exit);
    }),
  );
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) parseLine(line, state);
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  /** waits until probe() gives a value; fails early when the client exits, naming what it printed */
  async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
    let failure: string | undefined;
    let found: T | undefined;
    try {
      await expect
        .poll(() => (found = probe()) ?? (exit ? 'exited' : undefined), {
          timeout: 15_000,
          interval: 25,
          message: what,
        })
        .toBeDefined();
    } catch (error) {
      failure = (error as Error).message;
    }
    if (found === undefined) {
      const why = failure ?? `the client exited (code ${String(exit?.code)}) before ${what}`;
      throw new Error(`${why}\nclient stdout:\n${stdout}\nclient stderr:\n${stderr}`);
    }
    return found;
  }
  return {
    messages: state.messages,
    get granted() {
      return state.granted;
    },
    get connack() {
      return state.connack;
    },
    subscribed: () => until('the SUBACK', () => state.granted),
    received: (what, predicate) => until(what, () => state.messages.find(predicate)),
    async stop() {
      if (!exit) child.kill('SIGTERM');
      return exited;
    },
  };
}

interface SubscriberState {
  messages: ReceivedByClient[];
  granted: number[] | undefined;
  connack: number | undefined;
}

/**
 * mosquitto_sub at QoS 1 on `filter`, printing each message as JSON (-F %j) and its protocol
 * exchanges (-d), until stop().
 */
export function mosquittoSub(options: {
  port: number;
  filter: string;
  credentials?: Credentials;
  tls?: MosquittoTls;
}): RunningSubscriber {
  const args = ['-h', '127.0.0.1', '-p', String(options.port), '-t', options.filter, '-q', '1', '-d', '-F', '%j'];
  args.push(...credentialArgs(options.credentials, { user: '-u', password: '-P' }), ...tlsArgs(options.tls));
  // line-buffered: mosquitto_sub block-buffers stdout into a pipe, and its SUBACK line would wait
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return subscriber(child, (line, state) => {
    const connack = /received CONNACK \((\d+)\)/.exec(line);
    if (connack) state.connack = Number(connack[1]);
    const suback = /^Subscribed \(mid: \d+\): ([\d, ]+)$/.exec(line);
    if (suback) state.granted = (suback[1] ?? '').split(',').map((code) => Number(code.trim()));
    if (line.startsWith('{')) {
      const json = JSON.parse(line) as { topic: string; payload: string; retain: number; qos: number };
      state.messages.push({ topic: json.topic, payload: json.payload, retain: json.retain === 1, qos: json.qos });
    }
  });
}

export type PahoEvent =
  | { event: 'connack'; rc: number }
  | { event: 'suback'; granted: number[] }
  | ({ event: 'message' } & ReceivedByClient)
  | { event: 'puback'; index: number }
  | { event: 'disconnect'; rc: number };

function pahoArgs(port: number, credentials: Credentials | undefined): string[] {
  return [
    PAHO_CLIENT,
    '--port',
    String(port),
    ...credentialArgs(credentials, { user: '--username', password: '--password' }),
  ];
}

/** paho-mqtt subscribed at QoS 1 to `filters` until stop(). */
export function pahoSub(options: { port: number; filters: string[]; credentials?: Credentials }): RunningSubscriber {
  const child = spawn(
    SYSTEM_PYTHON,
    [...pahoArgs(options.port, options.credentials), 'subscribe', ...options.filters],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return subscriber(child, (line, state) => {
    if (!line.startsWith('{')) return;
    const event = JSON.parse(line) as PahoEvent;
    if (event.event === 'connack') state.connack = event.rc;
    if (event.event === 'suback') state.granted = event.granted;
    if (event.event === 'message') {
      state.messages.push({ topic: event.topic, payload: event.payload, retain: event.retain, qos: event.qos });
    }
  });
}

export interface PahoMessage {
  topic: string;
  payload: string;
  /** pad the payload with spaces to this many bytes */
  padTo?: number;
  qos?: 0 | 1;
  retain?: boolean;
}

export interface PahoPublishResult extends ExitedProcess {
  events: PahoEvent[];
  /** indexes of the messages the broker acknowledged */
  acknowledged: number[];
}

/**
 * paho-mqtt publishing `messages` in order on one connection; exits 0 once all are acknowledged,
 * 3 when the connection ends first, 4 when the CONNECT is refused (see paho_client.py).
 */
export async function pahoPub(options: {
  port: number;
  messages: PahoMessage[];
  credentials?: Credentials;
}): Promise<PahoPublishResult> {
  const result = await run(SYSTEM_PYTHON, [
    ...pahoArgs(options.port, options.credentials),
    'publish',
    JSON.stringify(options.messages),
  ]);
  const events = result.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as PahoEvent);
  const acknowledged = events.flatMap((event) => (event.event === 'puback' ? [event.index] : []));
  return { ...result, events, acknowledged };
}
