/**
 * The edge agent's reconnects against the real broker (mutual TLS, real Aedes, real sockets):
 * after a short broker outage it is back after the delays its policy scheduled, and every failed
 * attempt is one log line. Delays are asserted as the scheduler reported them in the log, never
 * by the wall clock; the jitter's randomness is injected.
 */
import { registerCleanup } from '../helpers/teardown.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { startEdgeAgent, type EdgeAgent } from '../../edge/agent.js';
import { DEFAULT_RECONNECT_POLICY } from '../../edge/uplink/reconnect-scheduler.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const silent = pino({ level: 'silent' });

type LogLine = { msg: string; level: number; [field: string]: unknown };

let certs: TestCertificates;
let database: TempDatabase;

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [DEVICE] });
});

function capturingLogger(lines: LogLine[]) {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return pino({ level: 'debug' }, sink);
}

async function brokerOn(port: number): Promise<RunningBroker> {
  const broker = await startBroker({ tls: certs.broker, host: '127.0.0.1', port, logger: silent });
  registerCleanup(() => broker.close());
  return broker;
}

async function agentAgainst(port: number, lines: LogLine[], random: () => number): Promise<EdgeAgent> {
  database = tempDatabase();
  const agent = await startEdgeAgent({
    deviceId: DEVICE,
    dbUrl: database.url,
    sensorPort: 0,
    brokerUrl: `mqtts://127.0.0.1:${port}`,
    tls: certs.devices[DEVICE]!,
    reconnectRandom: random,
    logger: capturingLogger(lines),
  });
  registerCleanup(() => agent.close());
  return agent;
}

const FAILURE_LINE =
  /^(uplink disconnected|uplink connect attempt failed|the broker refused this device's credentials)/;

describe('reconnects (default policy, injected jitter)', () => {
  it('is back a few seconds after a short broker outage, after exactly the delays the policy scheduled', async () => {
    const lines: LogLine[] = [];
    const first = await brokerOn(0);
    const port = first.port;
    // 10 % of each window: 0.5 s, 1 s, 1.5 s, …
    const agent = await agentAgainst(port, lines, () => 0.1);
    await waitFor(
      'connected',
      () => agent.stats(),
      (stats) => stats.connected,
    );

    await first.close();
    // the broker stays down until two attempts against it have failed
    await waitFor(
      'two failed attempts while the broker is down',
      () => lines.filter((line) => /^uplink connect attempt failed/.test(line.msg)).length,
      (count) => count >= 2,
    );
    await brokerOn(port);
    const reconnected = await waitFor(
      'the reconnect',
      () => lines.find((line) => line.msg === 'uplink reconnected'),
      (line) => line !== undefined,
    );

    const failures = lines.filter((line) => FAILURE_LINE.test(line.msg));
    expect(failures[0]?.msg).toMatch(/^uplink disconnected/);
    // one line per failure, numbered 1, 2, 3, … and the reconnect counts them all
    expect(failures.map((line) => line.failures)).toEqual(failures.map((_line, index) => index + 1));
    expect(reconnected?.failures).toBe(failures.length);
    // each delay is 10 % of its window; the windows are the policy's: 5 s doubling to 15 s
    for (const line of failures) {
      const window = Math.min(15_000, 5_000 * 2 ** ((line.failures as number) - 1));
      expect(line).toMatchObject({ windowMs: window, delayMs: Math.round(0.1 * window), errorClass: 'network' });
      expect(line.msg).toMatch(new RegExp(`; retrying in ${line.delayMs as number} ms$`));
    }
    // the whole outage cost the device the sum of these delays: a few seconds, not a minute
    const waited = failures.reduce((sum, line) => sum + (line.delayMs as number), 0);
    expect(waited).toBeLessThanOrEqual(0.1 * (5_000 + 10_000 + 15_000 * (failures.length - 2)));
    expect(DEFAULT_RECONNECT_POLICY.maxDelayMs).toBe(15_000);
  });

  it('logs each failed attempt once, although mqtt.js reports a failed TLS connect twice', async () => {
    const lines: LogLine[] = [];
    // a port nobody listens on: every attempt fails with ECONNREFUSED, reported by mqtt.js's TLS
    // stream builder and again by its stream error handler
    const probe = await brokerOn(0);
    const port = probe.port;
    await probe.close();
    // jitter 0: every attempt follows the previous one at once
    const agent = await agentAgainst(port, lines, () => 0);
    await waitFor(
      'five failed attempts',
      () => lines.filter((line) => FAILURE_LINE.test(line.msg)).length,
      (count) => count >= 5,
    );
    await agent.close();

    const failures = lines.filter((line) => FAILURE_LINE.test(line.msg));
    expect(failures.map((line) => line.failures)).toEqual(failures.map((_line, index) => index + 1));
    expect(failures.every((line) => /ECONNREFUSED/.test(line.msg) && line.level === 40)).toBe(true);
    // nothing else about these attempts at warn or above
    expect(lines.filter((line) => line.level >= 40 && !FAILURE_LINE.test(line.msg))).toEqual([]);
  });
});
