/**
 * The one way a process of this system starts and ends (broker/main.ts, edge/main.ts,
 * bridge/main.ts). Guarantees:
 *
 * - A start-up failure is printed plainly on stderr as `<name> failed to start: <message>` (a
 *   ConfigError names the variable; no stack for it), logged as fatal, and the process exits 1.
 * - SIGTERM or SIGINT logs "shutting down" and calls close() once. A clean close logs "closed" and
 *   exits 0; a failed close exits 1; a close that takes longer than the grace period (default
 *   10 s, SHUTDOWN_GRACE_MS) exits 1 when it expires; a second signal exits 1 at once.
 * - A signal that arrives while the process is still starting is remembered: the process closes
 *   as soon as it has started (or exits 1 if the start fails).
 *
 * process.exit is called explicitly at the end: a library that leaves a handle open (a reconnect
 * timer, a socket) must not keep a stopped process alive. pino's default destination writes
 * synchronously, so every line logged before is out.
 *
 * Timers, signals, exit and stderr come through a ProcessHost, so the decisions are unit-tested
 * without a real process (tests/unit/process-lifecycle.test.ts); tests/integration/
 * process-lifecycle.test.ts runs the three real entry points.
 */
import { ConfigError, envInt, MAX_TIMER_MS, type Env } from './env.js';
import type { Logger } from './logger.js';

export interface Closable {
  close(): Promise<void>;
}

export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;

/** SHUTDOWN_GRACE_MS, shared by the three process configurations; default 10 s. */
export function shutdownGraceFromEnv(env: Env): number {
  return envInt(env, 'SHUTDOWN_GRACE_MS', DEFAULT_SHUTDOWN_GRACE_MS, { min: 1, max: MAX_TIMER_MS });
}

export type ShutdownSignal = 'SIGTERM' | 'SIGINT';

/** What of the Node.js process runProcess uses. */
export interface ProcessHost {
  onSignal(signal: ShutdownSignal, listener: () => void): void;
  /** does not return in a real process */
  exit(code: number): void;
  printError(line: string): void;
  /** returns a function that cancels the timer */
  setTimer(ms: number, callback: () => void): () => void;
}

export const nodeProcessHost: ProcessHost = {
  onSignal: (signal, listener) => void process.on(signal, listener),
  exit: (code) => process.exit(code),
  printError: (line) => void process.stderr.write(`${line}\n`),
  setTimer: (ms, callback) => {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface ProcessDefinition<Config extends { shutdownGraceMs?: number }> {
  /** e.g. 'broker'; starts every message printed on stderr */
  name: string;
  logger: Logger;
  /** reads and validates the environment; throwing a ConfigError is the expected failure */
  loadConfig(): Config;
  start(config: Config): Promise<Closable>;
  host?: ProcessHost;
}

/**
 * Runs the process to its end. Resolves with the exit code handed to host.exit (in a real process
 * it never resolves: exit ends it first).
 */
export function runProcess<Config extends { shutdownGraceMs?: number }>(
  definition: ProcessDefinition<Config>,
): Promise<number> {
  const { name, logger } = definition;
  const host = definition.host ?? nodeProcessHost;
  let graceMs = DEFAULT_SHUTDOWN_GRACE_MS;
  let state: 'starting' | 'running' | 'closing' | 'exited' = 'starting';
  let signalledWhileStarting: ShutdownSignal | undefined;
  let component: Closable | undefined;
  let cancelGraceTimer: (() => void) | undefined;
  let resolveOutcome: (code: number) => void = () => undefined;
  const outcome = new Promise<number>((resolve) => (resolveOutcome = resolve));

  const exit = (code: number): void => {
    if (state === 'exited') return;
    state = 'exited';
    cancelGraceTimer?.();
    resolveOutcome(code);
    host.exit(code);
  };

  const close = (signal: ShutdownSignal, running: Closable): void => {
    state = 'closing';
    logger.info({ signal, graceMs }, `${name} shutting down`);
    cancelGraceTimer = host.setTimer(graceMs, () => {
      logger.error({ graceMs }, `${name} did not close within ${graceMs} ms: exiting`);
      exit(1);
    });
    running.close().then(
      () => {
        if (state !== 'closing') return;
        logger.info(`${name} closed`);
        exit(0);
      },
      (error: unknown) => {
        if (state !== 'closing') return;
        logger.error({ err: error }, `${name} did not close cleanly: ${messageOf(error)}`);
        exit(1);
      },
    );
  };

  const onSignal = (signal: ShutdownSignal): void => {
    switch (state) {
      case 'starting':
        if (signalledWhileStarting !== undefined) {
          logger.warn({ signal }, `second signal while starting: ${name} exits now`);
          exit(1);
          return;
        }
        signalledWhileStarting = signal;
        logger.info({ signal }, `${name} is still starting; it closes as soon as it has started`);
        return;
      case 'running':
        if (component !== undefined) close(signal, component);
        return;
      case 'closing':
        logger.warn({ signal }, `second signal: ${name} exits now`);
        exit(1);
        return;
      case 'exited':
        return;
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) host.onSignal(signal, () => onSignal(signal));

  const fail = (error: unknown): void => {
    const message = messageOf(error);
    host.printError(`${name} failed to start: ${message}`);
    if (error instanceof ConfigError) logger.fatal(`${name} failed to start: ${message}`);
    else logger.fatal({ err: error }, `${name} failed to start: ${message}`);
    exit(1);
  };

  let config: Config;
  try {
    config = definition.loadConfig();
    graceMs = config.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  } catch (error) {
    fail(error);
    return outcome;
  }
  definition.start(config).then(
    (started) => {
      if (state === 'exited') {
        // a second signal during start-up already ended the process (only reachable with a test host)
        void started.close().catch(() => undefined);
        return;
      }
      component = started;
      state = 'running';
      if (signalledWhileStarting !== undefined) close(signalledWhileStarting, started);
    },
    (error: unknown) => {
      if (state !== 'exited') fail(error);
    },
  );
  return outcome;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
