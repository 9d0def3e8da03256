/**
 * The control plane as separate processes, started through their real entry points
 * (`broker/main.ts`, `bridge/main.ts`) with environment configuration, exactly as deployed.
 * The bench uses this so that the edge agent (which does synchronous libSQL work on its event
 * loop) does not share an event loop with the broker and the bridge.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CertificateBundle } from '../certs/dev-bundle.js';
import { freePort } from './free-port.js';

export interface ControlPlaneProcesses {
  brokerPort: number;
  bridgeHttpPort: number;
  /** the bridge's REST API (mutual TLS; its server certificate is the dev bundle's broker certificate, for 127.0.0.1) */
  apiPort: number;
  /** The pid of the running process (e.g. to freeze it with SIGSTOP before a crash). */
  pid(name: 'broker' | 'bridge'): number;
  /** Kills one process with `signal` (a crash with SIGKILL), starts it again and waits until it is healthy. */
  restart(name: 'broker' | 'bridge', signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM to the bridge, then the broker (SIGKILL after 10 s each); idempotent */
  close(): Promise<void>;
}

export interface Spawned {
  name: string;
  child: ChildProcess;
  logPath: string;
}

export function spawnEntryPoint(name: string, entry: string, env: Record<string, string>, logDir: string): Spawned {
  const logPath = join(logDir, `${name}.log`);
  const log = openSync(logPath, 'a');
  // BENCH_NODE_FLAGS_<NAME>: Node flags for this process only (--trace-gc, a profiler hook), which
  // NODE_OPTIONS would refuse or pass to every process
  const extra = (process.env[`BENCH_NODE_FLAGS_${name.toUpperCase()}`] ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...extra, '--import', 'tsx', entry], {
    env: { ...process.env, ...env },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  return { name, child, logPath };
}

export async function waitHealthy(spawned: Spawned, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (spawned.child.exitCode !== null) break;
    const status = await fetch(url).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const tail = readFileSync(spawned.logPath, 'utf8').split('\n').slice(-5).join('\n');
  throw new Error(
    `${spawned.name} did not become healthy at ${url} (exit code ${spawned.child.exitCode}); log tail:\n${tail}`,
  );
}

export async function stopProcess(
  spawned: Spawned,
  graceMs = 10_000,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  if (spawned.child.exitCode !== null || spawned.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => spawned.child.once('exit', () => resolve()));
  spawned.child.kill(signal);
  const timer = setTimeout(() => spawned.child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function startControlPlaneProcesses(options: {
  certificates: CertificateBundle;
  databaseUrl: string;
  logDir: string;
  logLevel?: string;
  /** more bridge environment (e.g. DOWNSTREAM_POLL_MS) */
  bridgeEnv?: Record<string, string>;
}): Promise<ControlPlaneProcesses> {
  const { certificates } = options;
  const bridgeFiles = certificates.services['bridge'];
  if (!bridgeFiles) throw new Error('no bridge certificate in the bundle');
  const [brokerPort, brokerMetricsPort, bridgeHttpPort, apiPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const logLevel = options.logLevel ?? 'warn';
  const definitions = {
    broker: {
      entry: 'broker/main.ts',
      healthUrl: `http://127.0.0.1:${brokerMetricsPort}/healthz`,
      env: {
        LOG_LEVEL: logLevel,
        BROKER_HOST: '127.0.0.1',
        BROKER_PORT: String(brokerPort),
        METRICS_PORT: String(brokerMetricsPort),
        BROKER_TLS_CERT: certificates.broker.certPath,
        BROKER_TLS_KEY: certificates.broker.keyPath,
        BROKER_TLS_CA: certificates.ca.certPath,
      },
    },
    bridge: {
      entry: 'bridge/main.ts',
      healthUrl: `http://127.0.0.1:${bridgeHttpPort}/healthz`,
      env: {
        LOG_LEVEL: logLevel,
        DATABASE_URL: options.databaseUrl,
        BROKER_URL: `mqtts://127.0.0.1:${brokerPort}`,
        TLS_CA: certificates.ca.certPath,
        TLS_CERT: bridgeFiles.certPath,
        TLS_KEY: bridgeFiles.keyPath,
        BRIDGE_CLIENT_ID: 'bridge',
        HTTP_HOST: '127.0.0.1',
        HTTP_PORT: String(bridgeHttpPort),
        API_HOST: '127.0.0.1',
        API_PORT: String(apiPort),
        API_TLS_CA: certificates.ca.certPath,
        API_TLS_CERT: certificates.broker.certPath,
        API_TLS_KEY: certificates.broker.keyPath,
        ...options.bridgeEnv,
      },
    },
  } as const;
  const running = new Map<'broker' | 'bridge', Spawned>();
  const start = async (name: 'broker' | 'bridge') => {
    const definition = definitions[name];
    const spawned = spawnEntryPoint(name, definition.entry, definition.env, options.logDir);
    running.set(name, spawned);
    await waitHealthy(spawned, definition.healthUrl);
  };
  const stopAll = async () => {
    for (const name of ['bridge', 'broker'] as const) {
      const spawned = running.get(name);
      if (spawned) await stopProcess(spawned);
    }
  };
  try {
    await start('broker');
    await start('bridge');
  } catch (error) {
    await stopAll();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    brokerPort,
    bridgeHttpPort,
    apiPort,
    pid(name) {
      const pid = running.get(name)?.child.pid;
      if (pid === undefined) throw new Error(`${name} is not running`);
      return pid;
    },
    async restart(name, signal = 'SIGKILL') {
      const spawned = running.get(name);
      if (spawned) await stopProcess(spawned, 10_000, signal);
      await start(name);
    },
    close: () => (closing ??= stopAll()),
  };
}
