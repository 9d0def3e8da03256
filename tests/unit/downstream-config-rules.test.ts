import { describe, expect, it } from 'vitest';
import {
  checkConfigWrite,
  configDesired,
  configOrder,
  isLagging,
  planConfigReport,
} from '../../bridge/downstream/config-rules.js';
import { decodeCursor, encodeCursor } from '../../bridge/downstream/cursor.js';
import { DownstreamError } from '../../bridge/downstream/errors.js';
import type { ConfigState } from '../../bridge/downstream/views.js';
import { MAX_CONFIG_VALUE_BYTES } from '../../schemas/limits.js';

const state = (overrides: Partial<ConfigState> = {}): ConfigState => ({
  deviceId: '3b0f6c1e-8a2d-4e7f-9b1c-2d3e4f5a6b7c',
  key: 'app.mode',
  value: 'eco',
  version: 3,
  updatedAt: '2026-11-29T10:00:00.000Z',
  reportedVersion: 2,
  reportedStatus: 'applied',
  reportedError: null,
  reportedAt: '2026-11-29T10:00:00.000Z',
  deleted: false,
  ...overrides,
});

describe('checkConfigWrite', () => {
  it('takes any JSON value under a valid key and checks agent settings against their schema', () => {
    expect(checkConfigWrite('app.mode', null)).toEqual({ ok: true, value: null });
    expect(checkConfigWrite('agent.syncIntervalMs', 5000)).toMatchObject({ ok: true });
    expect(checkConfigWrite('agent.syncIntervalMs', 5)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/agent.syncIntervalMs/) as string,
    });
    expect(checkConfigWrite('agent.unknown', 1)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not an agent setting/) as string,
    });
    expect(checkConfigWrite('reported', 1)).toMatchObject({ ok: false });
    expect(checkConfigWrite('a/b', 1)).toMatchObject({ ok: false });
    expect(checkConfigWrite('app.mode', undefined)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/missing/) as string,
    });
    expect(checkConfigWrite('app.big', 'x'.repeat(MAX_CONFIG_VALUE_BYTES))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/bytes/) as string,
    });
  });
});

describe('planConfigReport', () => {
  it('applies a newer report, ignores an older or equal one, refuses a version ahead of the desired one or an unknown key', () => {
    expect(planConfigReport(state(), { key: 'app.mode', version: 3, status: 'applied' })).toEqual({ kind: 'apply' });
    expect(planConfigReport(state(), { key: 'app.mode', version: 2, status: 'rejected' })).toEqual({
      kind: 'ignore',
      reason: 'duplicate',
    });
    expect(planConfigReport(state(), { key: 'app.mode', version: 1, status: 'applied' })).toEqual({
      kind: 'ignore',
      reason: 'older',
    });
    expect(planConfigReport(state(), { key: 'app.mode', version: 4, status: 'applied' })).toMatchObject({
      kind: 'refuse',
      code: 'invalid',
    });
    expect(planConfigReport(null, { key: 'app.mode', version: 1, status: 'applied' })).toMatchObject({
      kind: 'refuse',
      code: 'not-found',
    });
    expect(
      planConfigReport(state({ deleted: true }), { key: 'app.mode', version: 3, status: 'applied' }),
    ).toMatchObject({ kind: 'refuse', code: 'not-found' });
    expect(
      planConfigReport(state({ reportedVersion: null }), { key: 'app.mode', version: 1, status: 'applied' }),
    ).toEqual({ kind: 'apply' });
  });
});

describe('the retained truth of a key', () => {
  it('is {key, value, version, reportedVersion?} and a clear once deleted', () => {
    expect(configDesired(state())).toEqual({ key: 'app.mode', value: 'eco', version: 3, reportedVersion: 2 });
    expect(configDesired(state({ reportedVersion: null }))).toEqual({ key: 'app.mode', value: 'eco', version: 3 });
    expect(configDesired(state({ deleted: true }))).toBeNull();
  });

  it('is published in an order that grows with the version, the deletion and the reported version', () => {
    expect(configOrder(state())).toEqual([3, 0, 2]);
    expect(configOrder(state({ deleted: true }))).toEqual([3, 1, 2]);
    expect(configOrder(state({ version: 4, reportedVersion: null }))).toEqual([4, 0, 0]);
  });

  it('lags until the current version is reported applied', () => {
    expect(isLagging(state())).toBe(true);
    expect(isLagging(state({ reportedVersion: 3 }))).toBe(false);
    expect(isLagging(state({ reportedVersion: 3, reportedStatus: 'rejected' }))).toBe(true);
    expect(isLagging(state({ reportedVersion: null, reportedStatus: null }))).toBe(true);
  });
});

describe('cursors', () => {
  it('round-trip the key and refuse anything this API did not hand out', () => {
    expect(decodeCursor(encodeCursor(['a', 'b']), 2)).toEqual(['a', 'b']);
    expect(() => decodeCursor('garbage', 1)).toThrow(DownstreamError);
    expect(() => decodeCursor(encodeCursor(['a']), 2)).toThrow(/cursor/);
  });
});
