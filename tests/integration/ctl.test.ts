/**
 * ctl end to end: the CLI spawned as its own process (`node --import tsx ctl/main.ts`, what
 * `npm run ctl` runs) against the real bridge's REST API over mutual TLS with an operator
 * certificate, asserting its tables, its --json output and the exit codes scripts rely on.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { startApiSystem, type ApiSystem } from '../helpers/api-system.js';
import { makeBatch, makeRecord } from '../helpers/records.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEVICE = '6f708192-0000-4000-8000-00000000000a';
const UNKNOWN = '6f708192-0000-4000-8000-0000000000ff';

let system: ApiSystem;
let env: Record<string, string>;

beforeAll(async () => {
  system = await startApiSystem({ deviceIds: [DEVICE], operatorNames: ['alice'] });
  const operator = system.certificates.bundle.operators['alice'];
  if (operator === undefined) throw new Error('no operator certificate');
  env = {
    CTL_URL: system.url,
    CTL_CA: system.certificates.bundle.ca.certPath,
    CTL_CERT: operator.certPath,
    CTL_KEY: operator.keyPath,
  };
  const batch = makeBatch([makeRecord({ sensorId: 'boiler-1', value: 21.5 }), makeRecord({ sensorId: 'boiler-2' })]);
  expect((await system.device(DEVICE).post('/api/v1/sync/telemetry', batch)).status).toBe(200);
}, 120_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ctl(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'ctl/main.ts', ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env, ...extraEnv }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('ctl', () => {
  it('devices: prints a table of devices with presence and sync status, exit 0', async () => {
    const run = await ctl(['devices']);
    expect(run.code, run.stderr).toBe(0);
    const [header, ...rows] = run.stdout.trim().split('\n');
    expect(header).toMatch(/^DEVICE\s+NAME\s+TYPE\s+PRESENCE\s+LAST SEEN\s+LAST SYNC\s+RESULT\s+SYNCED\s+PENDING$/);
    expect(rows.find((row) => row.startsWith(DEVICE))).toMatch(/active .* success\s+2\s+0$/);
  });

  it('status --json: prints the API body', async () => {
    const run = await ctl(['status', DEVICE, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ deviceId: DEVICE, totalSyncedRecords: 2, pendingCommands: 0 });
  });

  it('command send, list and cancel; a second cancel is a conflict (exit 4)', async () => {
    const sent = await ctl(['command', 'send', DEVICE, 'ping', '{}', '--expires-in', '10m', '--json']);
    expect(sent.code, sent.stderr).toBe(0);
    const command = JSON.parse(sent.stdout) as { commandId: string; status: string; expiresAt: string };
    expect(command.status).toBe('pending');
    expect(Date.parse(command.expiresAt) - Date.now()).toBeGreaterThan(9 * 60_000);

    const listed = await ctl(['command', 'list', '--device', DEVICE]);
    expect(listed.stdout).toMatch(new RegExp(`${command.commandId}\\s+${DEVICE}\\s+ping\\s+pending`));
    expect((await ctl(['command', 'cancel', command.commandId])).code).toBe(0);
    const again = await ctl(['command', 'cancel', command.commandId]);
    expect(again.code).toBe(4);
    expect(again.stderr).toContain('409 conflict');
  });

  it('command send --wait: exit 0 with the result once the device reports it executed', async () => {
    const running = ctl(['command', 'send', DEVICE, 'ping', '{}', '--wait', '--timeout', '50s', '--json']);
    // the device (over the HTTP fallback) finds the command among its live ones and runs it
    const device = system.device(DEVICE);
    await expect
      .poll(
        async () =>
          (
            (await device.get(`/api/v1/sync/commands/${DEVICE}`)).body as {
              items: { commandId: string; type: string }[];
            }
          ).items,
        { timeout: 30_000, interval: 100 },
      )
      .toEqual(expect.arrayContaining([expect.objectContaining({ type: 'ping' })]));
    const items = ((await device.get(`/api/v1/sync/commands/${DEVICE}`)).body as { items: { commandId: string }[] })
      .items;
    for (const { commandId } of items) {
      await device.post(`/api/v1/sync/ack/${commandId}`, { status: 'executing', at: new Date().toISOString() });
      await device.post(`/api/v1/sync/ack/${commandId}`, {
        status: 'executed',
        at: new Date().toISOString(),
        result: { pong: true },
      });
    }
    const run = await running;
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ type: 'ping', status: 'executed', result: { pong: true } });
  });

  it('command send --wait: exit 8 when the command does not succeed in time', async () => {
    const run = await ctl(['command', 'send', DEVICE, 'ping', '--wait', '--timeout', '1s']);
    expect(run.code).toBe(8);
    expect(run.stderr).toMatch(/is still pending after 1000 ms/);
  });

  it('config set and get with --expect-version; a stale version exits 4, a value the agent refuses exits 5', async () => {
    const set = await ctl(['config', 'set', DEVICE, 'agent.logLevel', '"debug"']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/agent\.logLevel\s+debug\s+1/);
    expect((await ctl(['config', 'set', DEVICE, 'agent.logLevel', '"info"', '--expect-version', '1'])).code).toBe(0);
    const stale = await ctl(['config', 'set', DEVICE, 'agent.logLevel', '"warn"', '--expect-version', '1']);
    expect(stale.code).toBe(4);
    const refused = await ctl(['config', 'set', DEVICE, 'agent.logLevel', '"loud"']);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('422 invalid-config');
    const got = await ctl(['config', 'get', DEVICE, 'agent.logLevel']);
    expect(got.stdout).toMatch(/agent\.logLevel\s+info\s+2/);
  });

  it('telemetry: a table of readings filtered by sensor', async () => {
    const run = await ctl(['telemetry', DEVICE, '--sensor', 'boiler-1']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TIMESTAMP\s+SENSOR\s+TYPE\s+VALUE/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/boiler-1\s+temperature\s+21\.5\s+C/)]);
  });

  it('exits 3 for an unknown device, 1 for bad usage, 2 when it cannot connect, 7 for a certificate that is not an operator', async () => {
    expect((await ctl(['status', UNKNOWN])).code).toBe(3);
    const usage = await ctl(['command', 'send', DEVICE, 'ping', '{not json']);
    expect(usage.code).toBe(1);
    expect(usage.stderr).toContain('must be JSON');
    expect((await ctl(['frobnicate'])).code).toBe(1);
    const unreachable = await ctl(['devices'], { CTL_URL: 'https://127.0.0.1:1' });
    expect(unreachable.code).toBe(2);
    const device = system.certificates.bundle.devices[DEVICE];
    if (device === undefined) throw new Error('no device certificate');
    const asDevice = await ctl(['devices'], { CTL_CERT: device.certPath, CTL_KEY: device.keyPath });
    expect(asDevice.code).toBe(7);
    expect(asDevice.stderr).toContain('403 forbidden');
  });
});
