/**
 * The decisions of common/process-lifecycle.ts with a scripted host: signals, timers, exit and
 * stderr are recorded, so every path (start failure, clean close, failed close, grace expiry,
 * second signal, signal during start-up) is checked without a real process. The real entry points
 * are run in tests/integration/process-lifecycle.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/env.js';
import {
  DEFAULT_SHUTDOWN_GRACE_MS,
  runProcess,
  shutdownGraceFromEnv,
  type Closable,
  type ProcessHost,
  type ShutdownSignal,
} from '../../common/process-lifecycle.js';
import { capturedLogger } from '../helpers/logger.js';

interface ScriptedHost extends ProcessHost {
  exits: number[];
  stderr: string[];
  timers: { ms: number; fire(): void; cancelled: boolean }[];
  signal(signal: ShutdownSignal): void;
}

function scriptedHost(): ScriptedHost {
  const listeners = new Map<ShutdownSignal, () => void>();
  const host: ScriptedHost = {
    exits: [],
    stderr: [],
    timers: [],
    onSignal: (signal, listener) => void listeners.set(signal, listener),
    exit: (code) => void host.exits.push(code),
    printError: (line) => void host.stderr.push(line),
    setTimer: (ms, callback) => {
      const timer = { ms, fire: callback, cancelled: false };
      host.timers.push(timer);
      return () => {
        timer.cancelled = true;
      };
    },
    signal: (signal) => listeners.get(signal)?.(),
  };
  return host;
}

/** A component whose close() the test settles by hand. */
function controllableComponent(): Closable & { closeCalls: number; finish(): void; fail(error: Error): void } {
  let finish: () => void = () => undefined;
  let fail: (error: Error) => void = () => undefined;
  const closed = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const component = {
    closeCalls: 0,
    close: () => {
      component.closeCalls += 1;
      return closed;
    },
    finish: () => finish(),
    fail: (error: Error) => fail(error),
  };
  return component;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('runProcess', () => {
  it('prints a ConfigError plainly on stderr, without a stack, and exits 1 without starting', async () => {
    const host = scriptedHost();
    const { logger, lines } = capturedLogger();
    let started = false;
    const code = await runProcess({
      name: 'broker',
      logger,
      host,
      loadConfig: () => {
        throw new ConfigError("BROKER_PORT must be an integer, got '1e3' (decimal digits only)");
      },
      start: () => {
        started = true;
        return Promise.resolve({ close: () => Promise.resolve() });
      },
    });
    expect(code).toBe(1);
    expect(host.exits).toEqual([1]);
    expect(started).toBe(false);
    expect(host.stderr).toEqual([
      "broker failed to start: BROKER_PORT must be an integer, got '1e3' (decimal digits only)",
    ]);
    expect(host.stderr.join('\n')).not.toMatch(/\n\s+at /);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 60,
        msg: "broker failed to start: BROKER_PORT must be an integer, got '1e3' (decimal digits only)",
      }),
    ]);
  });

  it('exits 1 with the message when start rejects, and logs the error with its stack', async () => {
    const host = scriptedHost();
    const { logger, lines } = capturedLogger();
    const code = await runProcess({
      name: 'bridge',
      logger,
      host,
      loadConfig: () => ({}),
      start: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')),
    });
    expect(code).toBe(1);
    expect(host.stderr).toEqual(['bridge failed to start: connect ECONNREFUSED 127.0.0.1:5432']);
    expect(lines[0]).toMatchObject({ level: 60, err: { stack: expect.stringContaining('ECONNREFUSED') } });
  });

  it('closes once on SIGTERM, logs "shutting down" and "closed", and exits 0', async () => {
    const host = scriptedHost();
    const { logger, lines } = capturedLogger();
    const component = controllableComponent();
    const outcome = runProcess({
      name: 'edge agent',
      logger,
      host,
      loadConfig: () => ({ shutdownGraceMs: 2500 }),
      start: () => Promise.resolve(component),
    });
    await settle();
    host.signal('SIGTERM');
    expect(component.closeCalls).toBe(1);
    expect(host.timers.map((timer) => timer.ms)).toEqual([2500]);
    expect(host.exits).toEqual([]);
    component.finish();
    expect(await outcome).toBe(0);
    expect(host.exits).toEqual([0]);
    expect(host.timers[0]?.cancelled).toBe(true);
    expect(lines.map((line) => line.msg)).toEqual(['edge agent shutting down', 'edge agent closed']);
  });

  it('uses a 10 s grace period when the configuration has none', async () => {
    const host = scriptedHost();
    const component = controllableComponent();
    void runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => Promise.resolve(component),
    });
    await settle();
    host.signal('SIGINT');
    expect(host.timers.map((timer) => timer.ms)).toEqual([DEFAULT_SHUTDOWN_GRACE_MS]);
    expect(DEFAULT_SHUTDOWN_GRACE_MS).toBe(10_000);
  });

  it('exits 1 when close() rejects', async () => {
    const host = scriptedHost();
    const component = controllableComponent();
    const outcome = runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => Promise.resolve(component),
    });
    await settle();
    host.signal('SIGTERM');
    component.fail(new Error('pool.end failed'));
    expect(await outcome).toBe(1);
  });

  it('exits 1 when the grace period expires, and ignores a close that finishes afterwards', async () => {
    const host = scriptedHost();
    const { logger, lines } = capturedLogger();
    const component = controllableComponent();
    const outcome = runProcess({
      name: 'x',
      logger,
      host,
      loadConfig: () => ({ shutdownGraceMs: 50 }),
      start: () => Promise.resolve(component),
    });
    await settle();
    host.signal('SIGTERM');
    host.timers[0]?.fire();
    expect(await outcome).toBe(1);
    component.finish();
    await settle();
    expect(host.exits).toEqual([1]);
    expect(lines.at(-1)).toMatchObject({ level: 50, msg: 'x did not close within 50 ms: exiting' });
  });

  it('exits 1 at once on a second signal while closing', async () => {
    const host = scriptedHost();
    const component = controllableComponent();
    const outcome = runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => Promise.resolve(component),
    });
    await settle();
    host.signal('SIGTERM');
    host.signal('SIGINT');
    expect(await outcome).toBe(1);
    expect(component.closeCalls).toBe(1);
    component.finish();
    await settle();
    expect(host.exits).toEqual([1]);
  });

  it('remembers a signal that arrives during start-up and closes as soon as the start finishes', async () => {
    const host = scriptedHost();
    const component = controllableComponent();
    let finishStart: (value: Closable) => void = () => undefined;
    const outcome = runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => new Promise<Closable>((resolve) => (finishStart = resolve)),
    });
    host.signal('SIGTERM');
    expect(component.closeCalls).toBe(0);
    finishStart(component);
    await settle();
    expect(component.closeCalls).toBe(1);
    component.finish();
    expect(await outcome).toBe(0);
  });

  it('exits 1 at once on a second signal during start-up, and closes what started afterwards', async () => {
    const host = scriptedHost();
    const component = controllableComponent();
    let finishStart: (value: Closable) => void = () => undefined;
    const outcome = runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => new Promise<Closable>((resolve) => (finishStart = resolve)),
    });
    host.signal('SIGTERM');
    host.signal('SIGTERM');
    expect(await outcome).toBe(1);
    finishStart(component);
    await settle();
    expect(component.closeCalls).toBe(1);
    expect(host.exits).toEqual([1]);
  });

  it('exits 1 when the start fails after a signal arrived during start-up', async () => {
    const host = scriptedHost();
    let failStart: (error: Error) => void = () => undefined;
    const outcome = runProcess({
      name: 'x',
      logger: capturedLogger().logger,
      host,
      loadConfig: () => ({}),
      start: () => new Promise<Closable>((_resolve, reject) => (failStart = reject)),
    });
    host.signal('SIGINT');
    failStart(new Error('no broker'));
    expect(await outcome).toBe(1);
    expect(host.stderr).toEqual(['x failed to start: no broker']);
  });
});

describe('shutdownGraceFromEnv', () => {
  it('defaults to 10 s, takes decimal milliseconds and names SHUTDOWN_GRACE_MS when refusing a value', () => {
    expect(shutdownGraceFromEnv({})).toBe(10_000);
    expect(shutdownGraceFromEnv({ SHUTDOWN_GRACE_MS: '' })).toBe(10_000);
    expect(shutdownGraceFromEnv({ SHUTDOWN_GRACE_MS: '2500' })).toBe(2500);
    for (const bad of ['0', '-1', '1e3', '10s', '3000000000']) {
      expect(() => shutdownGraceFromEnv({ SHUTDOWN_GRACE_MS: bad }), bad).toThrow(/^SHUTDOWN_GRACE_MS must be/);
    }
  });
});
