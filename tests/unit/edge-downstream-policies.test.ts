/**
 * G6: the pure decisions of the edge's downstream side (edge/downstream/*): what a command message,
 * a cleared topic and a start do, the re-send backoff, config ordering, live agent settings and
 * local-application timeouts. No servers, the clock injected.
 */
import { describe, expect, it } from 'vitest';
import {
  boundedError,
  confirmsPendingReport,
  decideCleared,
  decideNewCommand,
  decideStart,
  localCommandTimeoutMs,
  MAX_REPORT_ERROR_CHARS,
  terminalReport,
} from '../../edge/downstream/command-decisions.js';
import { decideConfig } from '../../edge/downstream/config-decisions.js';
import { LiveAgentSettings } from '../../edge/downstream/agent-settings.js';
import { LocalCommandWaits, type Timers } from '../../edge/downstream/local-commands.js';
import { resendDelayMs, ResendSchedule } from '../../edge/downstream/report-resend.js';
import { MAX_COMMAND_RESULT_BYTES } from '../../schemas/limits.js';
import type { CommandMessage } from '../../schemas/messages.js';

const NOW = Date.parse('2026-11-29T10:00:00.000Z');
const message = (overrides: Partial<CommandMessage> = {}): CommandMessage => ({
  commandId: '0b6f2f4e-1c1a-4c39-9d8e-1f2a3b4c5d6e',
  type: 'ping',
  payload: {},
  createdAt: '2026-11-29T09:00:00.000Z',
  status: 'pending',
  ...overrides,
});

describe('a new command', () => {
  it('is delivered when valid and not expired', () => {
    expect(decideNewCommand(message(), NOW)).toEqual({ status: 'delivered', report: 'delivered' });
    expect(decideNewCommand(message({ expiresAt: '2026-11-29T10:00:00.001Z' }), NOW).status).toBe('delivered');
  });

  it('is expired, never started, when expiresAt is now or past', () => {
    for (const expiresAt of ['2026-11-29T10:00:00.000Z', '2026-11-28T10:00:00.000Z']) {
      expect(decideNewCommand(message({ expiresAt }), NOW)).toMatchObject({ status: 'expired', report: 'expired' });
    }
  });

  it('is rejected with the reason for an invalid built-in payload or setting', () => {
    expect(decideNewCommand(message({ payload: { x: 1 } }), NOW)).toMatchObject({
      status: 'rejected',
      error: expect.stringContaining('ping payload') as string,
    });
    expect(
      decideNewCommand(message({ type: 'set-setting', payload: { key: 'agent.logLevel', value: 'loud' } }), NOW),
    ).toMatchObject({ status: 'rejected', error: expect.stringContaining('set-setting') as string });
  });

  it('goes to local applications for any other type', () => {
    expect(decideNewCommand(message({ type: 'reboot', payload: { anything: [1, 2] } }), NOW).status).toBe('delivered');
  });
});

describe('confirmation, clear and start', () => {
  it('confirms a pending report when the retained status is at or past it, or the topic is cleared', () => {
    const delivered = { reportStatus: 'delivered' as const, reportConfirmed: false };
    expect(confirmsPendingReport(delivered, 'pending')).toBe(false);
    expect(confirmsPendingReport(delivered, 'delivered')).toBe(true);
    expect(confirmsPendingReport(delivered, 'executing')).toBe(true);
    expect(confirmsPendingReport(delivered, null)).toBe(true);
    const executed = { reportStatus: 'executed' as const, reportConfirmed: false };
    expect(confirmsPendingReport(executed, 'executing')).toBe(false);
    expect(confirmsPendingReport(executed, null)).toBe(true);
    expect(confirmsPendingReport({ reportStatus: 'executed', reportConfirmed: true }, null)).toBe(false);
  });

  it('cancels a command not yet started when its topic is cleared, and only confirms otherwise', () => {
    const base = { reportStatus: 'delivered' as const, reportConfirmed: false };
    expect(decideCleared({ ...base, status: 'delivered' })).toBe('cancel');
    expect(decideCleared({ ...base, status: 'executing', reportStatus: 'executing' })).toBe('confirm');
    expect(decideCleared({ status: 'executed', reportStatus: 'executed', reportConfirmed: false })).toBe('confirm');
    expect(decideCleared({ status: 'executed', reportStatus: 'executed', reportConfirmed: true })).toBe('nothing');
    expect(decideCleared(null)).toBe('nothing');
  });

  it('starts only a delivered command that has not expired by now', () => {
    expect(decideStart({ status: 'delivered', expiresAtMs: null }, NOW)).toBe('start');
    expect(decideStart({ status: 'delivered', expiresAtMs: NOW + 1 }, NOW)).toBe('start');
    expect(decideStart({ status: 'delivered', expiresAtMs: NOW }, NOW)).toBe('expired');
    for (const status of ['executing', 'executed', 'canceled', 'rejected'] as const) {
      expect(decideStart({ status, expiresAtMs: null }, NOW)).toBe('skip');
    }
  });
});

describe('reports', () => {
  it('turns a result too large for a report into failed with the reason', () => {
    const at = new Date(NOW).toISOString();
    expect(terminalReport({ status: 'executed', result: { ok: 1 } }, at)).toEqual({
      status: 'executed',
      at,
      result: { ok: 1 },
    });
    const huge = terminalReport({ status: 'executed', result: 'x'.repeat(MAX_COMMAND_RESULT_BYTES) }, at);
    expect(huge).toMatchObject({
      status: 'failed',
      error: expect.stringContaining('MAX_COMMAND_RESULT_BYTES') as string,
    });
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    expect(terminalReport({ status: 'executed', result: circular }, at)).toMatchObject({ status: 'failed' });
  });

  it('bounds an error to the schema length', () => {
    expect(boundedError('x'.repeat(5000))).toHaveLength(MAX_REPORT_ERROR_CHARS);
    expect(boundedError('')).toBe('no reason given');
  });

  it('re-sends with a doubling backoff up to the maximum, all at once after a reconnect', () => {
    const policy = { baseMs: 100, maxMs: 500 };
    expect([1, 2, 3, 4, 10].map((sends) => resendDelayMs(policy, sends))).toEqual([100, 200, 400, 500, 500]);
    let now = 0;
    const schedule = new ResendSchedule(policy, () => now);
    expect(schedule.due('a')).toBe(true);
    schedule.noteSent('a');
    expect(schedule.due('a')).toBe(false);
    now = 99;
    expect(schedule.due('a')).toBe(false);
    now = 100;
    expect(schedule.due('a')).toBe(true);
    schedule.noteSent('a');
    now = 250;
    expect(schedule.due('a')).toBe(false);
    schedule.reset();
    expect(schedule.due('a')).toBe(true);
    schedule.noteSent('a');
    schedule.forget('a');
    expect(schedule.due('a')).toBe(true);
  });
});

describe('config ordering', () => {
  it('applies only a version newer than the newest handled: 3 then 2 stays 3', () => {
    expect(decideConfig({ key: 'k', value: 1, version: 3 }, null)).toEqual({ apply: true, confirm: false });
    const handled3 = { version: 3, reportConfirmed: false };
    expect(decideConfig({ key: 'k', value: 1, version: 2 }, handled3)).toEqual({ apply: false, confirm: false });
    expect(decideConfig({ key: 'k', value: 1, version: 3 }, handled3).apply).toBe(false);
    expect(decideConfig({ key: 'k', value: 1, version: 4 }, handled3).apply).toBe(true);
  });

  it('confirms the report when reportedVersion reaches the handled version', () => {
    const handled3 = { version: 3, reportConfirmed: false };
    expect(decideConfig({ key: 'k', value: 1, version: 3, reportedVersion: 2 }, handled3).confirm).toBe(false);
    expect(decideConfig({ key: 'k', value: 1, version: 3, reportedVersion: 3 }, handled3).confirm).toBe(true);
    expect(
      decideConfig({ key: 'k', value: 1, version: 3, reportedVersion: 3 }, { ...handled3, reportConfirmed: true })
        .confirm,
    ).toBe(false);
  });
});

describe('live agent settings', () => {
  it('applies a valid value, refuses an invalid one with the reason keeping the previous value, and resets to the default', () => {
    const applied: string[] = [];
    const settings = new LiveAgentSettings(
      { 'agent.syncIntervalMs': 30_000, 'agent.batchMaxRecords': 1000, 'agent.logLevel': 'info' },
      {
        setSyncIntervalMs: (ms) => applied.push(`interval ${ms}`),
        setBatchMaxRecords: (records) => applied.push(`batch ${records}`),
        setLogLevel: (level) => applied.push(`level ${level}`),
      },
    );
    expect(settings.apply('agent.syncIntervalMs', 5000)).toEqual({ ok: true, value: 5000 });
    expect(settings.apply('agent.syncIntervalMs', 5)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('>= 100') as string,
    });
    expect(settings.apply('agent.batchMaxRecords', 1001)).toMatchObject({ ok: false });
    expect(settings.apply('agent.logLevel', 'debug')).toMatchObject({ ok: true });
    expect(settings.apply('agent.colour', 'red')).toEqual({
      ok: false,
      reason: "'agent.colour' is not an agent setting",
    });
    expect(settings.current).toEqual({
      'agent.syncIntervalMs': 5000,
      'agent.batchMaxRecords': 1000,
      'agent.logLevel': 'debug',
    });
    settings.reset('agent.syncIntervalMs');
    expect(applied).toEqual(['interval 5000', 'level debug', 'interval 30000']);
  });
});

describe('local application answers', () => {
  function fakeTimers(): Timers & { fire(): void } {
    const pending = new Map<number, () => void>();
    let next = 0;
    return {
      setTimeout: (callback) => {
        pending.set(++next, callback);
        return next;
      },
      clearTimeout: (handle) => void pending.delete(handle as number),
      fire: () => {
        for (const [id, callback] of [...pending]) {
          pending.delete(id);
          callback();
        }
      },
    };
  }

  it('resolves with the answer of a waiting command, refuses answers nobody waits for', async () => {
    const waits = new LocalCommandWaits(fakeTimers());
    expect(waits.answer('unknown', { status: 'executed' })).toBe(false);
    const outcome = waits.wait('c1', 1000);
    expect(waits.isWaiting('c1')).toBe(true);
    expect(waits.answer('c1', { status: 'executed', result: 1 })).toBe(true);
    await expect(outcome).resolves.toEqual({ status: 'executed', result: 1 });
    expect(waits.answer('c1', { status: 'executed' })).toBe(false);
  });

  it('fails a command after its timeout, and a late answer is refused', async () => {
    const timers = fakeTimers();
    const waits = new LocalCommandWaits(timers);
    const outcome = waits.wait('c2', 300);
    timers.fire();
    await expect(outcome).resolves.toMatchObject({
      status: 'failed',
      error: expect.stringContaining('300 ms') as string,
    });
    expect(waits.answer('c2', { status: 'executed' })).toBe(false);
  });

  it('gives up waiting on shutdown without an outcome', async () => {
    const waits = new LocalCommandWaits(fakeTimers());
    const outcome = waits.wait('c3', 300);
    waits.abandonAll();
    await expect(outcome).resolves.toBeNull();
    expect(waits.size).toBe(0);
  });

  it('takes payload.timeoutMs when it is a positive integer up to a day', () => {
    expect(localCommandTimeoutMs({}, 30_000)).toBe(30_000);
    expect(localCommandTimeoutMs({ timeoutMs: 500 }, 30_000)).toBe(500);
    for (const timeoutMs of [0, -1, 1.5, '500', 86_400_001]) {
      expect(localCommandTimeoutMs({ timeoutMs }, 30_000)).toBe(30_000);
    }
  });
});
