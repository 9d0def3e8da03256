/**
 * Broker, bridge and edge agent as separate processes (their real entry points, configured only by
 * environment), for tests that crash them: each handle knows its pid, can be frozen (SIGSTOP) so a
 * test can look at the state a crash would interrupt, and killed with SIGKILL. Also: reading one
 * value from a process's Prometheus endpoint; for a crashed and restarted edge agent: its options on
 * a libSQL file of its own, a local application on its listener, a command_queue row read from its
 * file. Each process is stopped at teardown if still running (a frozen one is killed).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import type { MqttClient } from 'mqtt';
import { expect } from 'vitest';
import type { CertificateBundle } from '../../certs/dev-bundle.js';
import { spawnEntryPoint, stopProcess, waitHealthy, type Spawned } from '../../devtools/control-plane-processes.js';
import { freePort } from '../../devtools/free-port.js';
import { connectClient } from './mqtt-client.js';
import { collectMessages, type ReceivedMessage } from './mqtt-observe.js';
import { registerCleanup } from './teardown.js';

/** how long freezeProcess waits for the kernel to report every thread of the process stopped */
export const FREEZE_MS = 5_000;
/** how long a process started here may take to answer its health check (waitHealthy's default) */
export const PROCESS_START_MS = 30_000;

export interface RunningProcess {
  name: string;
  pid: number;
  logPath: string;
  spawned: Spawned;
  /** SIGSTOP, resolved once the kernel reports every thread of the process stopped */
  freeze(): Promise<void>;
  /** SIGCONT */
  thaw(): void;
  /** SIGKILL (also of a frozen process), resolved once it has exited */
  kill(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after 10 s; also at teardown */
  close(): Promise<void>;
}

function runningProcess(spawned: Spawned): RunningProcess {
  const pid = spawned.child.pid;
  if (pid === undefined) throw new Error(`${spawned.name} did not start`);
  let frozen = false;
  registerCleanup(() => (frozen ? stopProcess(spawned, 10_000, 'SIGKILL') : stopProcess(spawned)));
  return {
    name: spawned.name,
    pid,
    logPath: spawned.logPath,
    spawned,
    freeze: async () => {
      frozen = true;
      await freezeProcess(pid, spawned.name);
    },
    thaw: () => {
      process.kill(pid, 'SIGCONT');
      frozen = false;
    },
    kill: () => stopProcess(spawned, 10_000, 'SIGKILL'),
    close: () => stopProcess(spawned),
  };
}

/** SIGSTOP, resolved once the kernel reports every thread of the process stopped. */
export async function freezeProcess(pid: number, name = `pid ${pid}`): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  await expect
    .poll(() => threadStates(pid), { timeout: FREEZE_MS, interval: 1, message: `${name} to be stopped` })
    .toSatisfy(allStopped);
}

/** The state letter of every thread of `pid` (/proc/<pid>/task/<tid>/stat); 'T' is stopped. */
function threadStates(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  });
}

function allStopped(states: string[]): boolean {
  return states.length > 0 && states.every((state) => state === 'T' || state === 't');
}

export async function startBrokerProcess(options: {
  certificates: CertificateBundle;
  logDir: string;
  name?: string;
  logLevel?: string;
}): Promise<RunningProcess & { port: number }> {
  const { certificates } = options;
  const [port, metricsPort] = [await freePort(), await freePort()];
  const spawned = spawnEntryPoint(
    options.name ?? 'broker',
    'broker/main.ts',
    {
      LOG_LEVEL: options.logLevel ?? 'warn',
      BROKER_HOST: '127.0.0.1',
      BROKER_PORT: String(port),
      METRICS_PORT: String(metricsPort),
      BROKER_TLS_CERT: certificates.broker.certPath,
      BROKER_TLS_KEY: certificates.broker.keyPath,
      BROKER_TLS_CA: certificates.ca.certPath,
    },
    options.logDir,
  );
  const running = runningProcess(spawned);
  await startedOrKilled(running, `http://127.0.0.1:${metricsPort}/healthz`);
  return { ...running, port };
}

export async function startBridgeProcess(options: {
  certificates: CertificateBundle;
  databaseUrl: string;
  /** mqtts://host:port */
  brokerUrl: string;
  logDir: string;
  name?: string;
  /** the service certificate (and MQTT client id); default 'bridge' */
  clientId?: string;
  logLevel?: string;
  env?: Record<string, string>;
}): Promise<RunningProcess & { metricsUrl: string }> {
  const { certificates } = options;
  const clientId = options.clientId ?? 'bridge';
  const files = certificates.services[clientId];
  if (!files) throw new Error(`no service certificate '${clientId}' in the bundle`);
  const httpPort = await freePort();
  const spawned = spawnEntryPoint(
    options.name ?? 'bridge',
    'bridge/main.ts',
    {
      LOG_LEVEL: options.logLevel ?? 'warn',
      DATABASE_URL: options.databaseUrl,
      BROKER_URL: options.brokerUrl,
      TLS_CA: certificates.ca.certPath,
      TLS_CERT: files.certPath,
      TLS_KEY: files.keyPath,
      BRIDGE_CLIENT_ID: clientId,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: String(httpPort),
      ...options.env,
    },
    options.logDir,
  );
  const running = runningProcess(spawned);
  await startedOrKilled(running, `http://127.0.0.1:${httpPort}/healthz`);
  return { ...running, metricsUrl: `http://127.0.0.1:${httpPort}/metrics` };
}

export interface EdgeProcessOptions {
  certificates: CertificateBundle;
  deviceId: string;
  /** mqtts://host:port */
  brokerUrl: string;
  /** the libSQL file; a restarted edge gets the same one */
  dbPath: string;
  sensorPort: number;
  metricsPort: number;
  logDir: string;
  name?: string;
  logLevel?: string;
  env?: Record<string, string>;
}

export async function startEdgeProcess(
  options: EdgeProcessOptions,
): Promise<RunningProcess & { metricsUrl: string; sensorUrl: string }> {
  const device = options.certificates.devices[options.deviceId];
  if (!device) throw new Error(`no device certificate for ${options.deviceId} in the bundle`);
  const spawned = spawnEntryPoint(
    options.name ?? 'edge',
    'edge/main.ts',
    {
      LOG_LEVEL: options.logLevel ?? 'warn',
      DEVICE_ID: options.deviceId,
      EDGE_DB_URL: `file:${options.dbPath}`,
      SENSOR_HOST: '127.0.0.1',
      SENSOR_PORT: String(options.sensorPort),
      BROKER_URL: options.brokerUrl,
      TLS_CA: options.certificates.ca.certPath,
      TLS_CERT: device.certPath,
      TLS_KEY: device.keyPath,
      METRICS_PORT: String(options.metricsPort),
      ...options.env,
    },
    options.logDir,
  );
  const running = runningProcess(spawned);
  const metricsUrl = `http://127.0.0.1:${options.metricsPort}/metrics`;
  await startedOrKilled(running, metricsUrl);
  return { ...running, metricsUrl, sensorUrl: `mqtt://127.0.0.1:${options.sensorPort}` };
}

/**
 * Options for an edge process on the libSQL file `<logDir>/<dbName>.db` and fresh sensor and
 * metrics ports; a restart passes the same options (with another `name`) to keep the file.
 */
export async function edgeProcessOptions(
  options: Omit<EdgeProcessOptions, 'dbPath' | 'sensorPort' | 'metricsPort'> & { dbName: string },
): Promise<EdgeProcessOptions> {
  const { dbName, ...rest } = options;
  return {
    ...rest,
    dbPath: join(options.logDir, `${dbName}.db`),
    sensorPort: await freePort(),
    metricsPort: await freePort(),
  };
}

/** A local application on an edge's listener (mqtt://…), subscribed to local/# at QoS 1; ended at teardown. */
export async function connectLocalApp(sensorUrl: string): Promise<{ client: MqttClient; received: ReceivedMessage[] }> {
  const client = await connectClient(sensorUrl, { clientId: `app-${crypto.randomUUID()}` });
  registerCleanup(() => client.endAsync(true));
  const received = collectMessages(client);
  await client.subscribeAsync('local/#', { qos: 1 });
  return { client, received };
}

/** The edge's command_queue row of `commandId`, read from its libSQL file (also while the edge is down). */
export async function readEdgeCommand(dbPath: string, commandId: string): Promise<Record<string, unknown> | undefined> {
  const reader = createClient({ url: `file:${dbPath}`, concurrency: 1 });
  try {
    const result = await reader.execute({ sql: 'SELECT * FROM command_queue WHERE id = ?', args: [commandId] });
    return result.rows[0] as unknown as Record<string, unknown> | undefined;
  } finally {
    reader.close();
  }
}

async function startedOrKilled(running: RunningProcess, healthUrl: string): Promise<void> {
  try {
    await waitHealthy(running.spawned, healthUrl);
  } catch (error) {
    await running.kill();
    throw error;
  }
}

/**
 * The value of one metric (summed over its label sets) from a Prometheus text endpoint; 0 when
 * the metric has no sample yet.
 */
export async function scrapeMetric(metricsUrl: string, name: string): Promise<number> {
  const response = await fetch(metricsUrl);
  if (!response.ok) throw new Error(`GET ${metricsUrl}: HTTP ${response.status}`);
  let sum = 0;
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] === name) sum += Number(match[3]);
  }
  return sum;
}

/** Every JSON line of a process's log (pino), skipping anything that is not JSON. */
export function readJsonLog(logPath: string): Record<string, unknown>[] {
  return readFileSync(logPath, 'utf8')
    .split('\n')
    .flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}
