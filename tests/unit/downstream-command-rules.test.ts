import { describe, expect, it } from 'vitest';
import {
  commandMessage,
  commandOrder,
  isDeliverable,
  planCancel,
  planCommandReport,
  planExpiry,
  reportTime,
  timestampsFor,
} from '../../bridge/downstream/command-rules.js';
import type { CommandView } from '../../bridge/downstream/views.js';
import { COMMAND_STATUSES, REPORTED_COMMAND_STATUSES, canTransition } from '../../schemas/command-lifecycle.js';

const NOW = Date.parse('2026-11-29T12:00:00.000Z');
const view = (overrides: Partial<CommandView> = {}): CommandView => ({
  commandId: '0b6f0000-0000-4000-8000-000000000001',
  deviceId: '3b0f6c1e-8a2d-4e7f-9b1c-2d3e4f5a6b7c',
  type: 'ping',
  payload: {},
  status: 'pending',
  createdAt: '2026-11-29T10:00:00.000Z',
  updatedAt: '2026-11-29T10:00:00.000Z',
  expiresAt: '2026-12-06T10:00:00.000Z',
  deliveredAt: null,
  startedAt: null,
  finishedAt: null,
  canceledAt: null,
  result: null,
  error: null,
  ...overrides,
});

describe('planCommandReport', () => {
  it('applies exactly the transitions of the lifecycle and ignores every other report as duplicate or late', () => {
    for (const current of COMMAND_STATUSES) {
      for (const reported of REPORTED_COMMAND_STATUSES) {
        const plan = planCommandReport(current, { status: reported, at: new Date(NOW).toISOString() }, NOW);
        if (canTransition(current, reported)) expect(plan).toMatchObject({ kind: 'apply', target: reported });
        else expect(plan).toEqual({ kind: 'ignore', reason: current === reported ? 'duplicate' : 'late' });
      }
    }
  });

  it('keeps the result only for executed and failed, and the error only for terminal reports', () => {
    const at = new Date(NOW).toISOString();
    expect(planCommandReport('executing', { status: 'executed', at, result: { pong: true } }, NOW)).toMatchObject({
      result: { pong: true },
      error: null,
    });
    expect(planCommandReport('pending', { status: 'delivered', at, result: 1, error: 'x' }, NOW)).toMatchObject({
      result: null,
      error: null,
    });
    expect(planCommandReport('delivered', { status: 'rejected', at, error: 'unknown type' }, NOW)).toMatchObject({
      error: 'unknown type',
    });
  });

  it('fills the timestamps of steps a terminal report skipped', () => {
    expect(timestampsFor('executed')).toEqual(['delivered_at', 'started_at', 'finished_at', 'executed_at']);
    expect(timestampsFor('rejected')).toEqual(['delivered_at', 'finished_at']);
    expect(timestampsFor('expired')).toEqual(['finished_at']);
  });

  it("takes the edge's `at`, unless it lies more than five minutes in the future", () => {
    expect(reportTime('2026-11-29T11:00:00.000Z', NOW).toISOString()).toBe('2026-11-29T11:00:00.000Z');
    expect(reportTime('1970-01-01T00:00:05.000Z', NOW).getTime()).toBe(5000);
    expect(reportTime('2026-11-29T12:04:59.000Z', NOW).toISOString()).toBe('2026-11-29T12:04:59.000Z');
    expect(reportTime('2026-11-29T12:10:00.000Z', NOW).getTime()).toBe(NOW);
  });
});

describe('planCancel', () => {
  it('cancels before execution and says why it is too late afterwards', () => {
    expect(planCancel('pending')).toMatchObject({ ok: true });
    expect(planCancel('delivered')).toMatchObject({ ok: true });
    expect(planCancel('executing')).toEqual({
      ok: false,
      reason: 'too late to cancel: the device has started the command',
    });
    expect(planCancel('executed')).toEqual({
      ok: false,
      reason: 'too late to cancel: the command is already executed',
    });
    expect(planCancel('canceled')).toMatchObject({ ok: false });
  });
});

describe('planExpiry', () => {
  it('expires only commands that have not started and are past their expiry at the given time', () => {
    const candidate = (
      commandId: string,
      status: 'pending' | 'delivered' | 'executing',
      expiresAtMs: number | null,
    ) => ({
      commandId,
      deviceId: 'd',
      status,
      expiresAtMs,
    });
    const due = planExpiry(
      [
        candidate('a', 'pending', NOW - 1),
        candidate('b', 'delivered', NOW),
        candidate('c', 'executing', NOW - 1),
        candidate('d', 'pending', NOW + 1),
        candidate('e', 'pending', null),
      ],
      NOW,
    );
    expect(due.map((c) => c.commandId)).toEqual(['a', 'b']);
  });
});

describe('the retained truth of a command', () => {
  it('is the command message while live and a clear once terminal', () => {
    expect(commandMessage(view({ status: 'delivered' }))).toEqual({
      commandId: view().commandId,
      type: 'ping',
      payload: {},
      createdAt: '2026-11-29T10:00:00.000Z',
      expiresAt: '2026-12-06T10:00:00.000Z',
      status: 'delivered',
    });
    expect(commandMessage(view({ expiresAt: null }))).not.toHaveProperty('expiresAt');
    for (const status of ['executed', 'failed', 'rejected', 'expired', 'canceled'] as const)
      expect(commandMessage(view({ status }))).toBeNull();
  });

  it('is published in an order that only grows: a clear ranks above every live state', () => {
    const pending = commandOrder(commandMessage(view()));
    const executing = commandOrder(commandMessage(view({ status: 'executing' })));
    const cleared = commandOrder(null);
    expect(pending[0]!).toBeLessThan(executing[0]!);
    expect(executing[0]!).toBeLessThan(cleared[0]!);
  });

  it('is deliverable while live and unexpired', () => {
    expect(isDeliverable(view(), NOW)).toBe(true);
    expect(isDeliverable(view({ expiresAt: '2026-11-29T11:59:59.999Z' }), NOW)).toBe(false);
    expect(isDeliverable(view({ status: 'canceled' }), NOW)).toBe(false);
    expect(isDeliverable(view({ expiresAt: null }), NOW)).toBe(true);
  });
});
