import { describe, expect, it } from 'vitest';
import {
  COMMAND_STATUSES,
  COMMAND_STATUS_RANK,
  canTransition,
  confirmsReport,
  isTerminalCommandStatus,
  type CommandStatus,
} from '../../schemas/command-lifecycle.js';
import { checkCommand } from '../../schemas/command-types.js';
import {
  checkAgentSetting,
  checkCommandMessagePayload,
  checkCommandReportPayload,
  checkConfigDesiredPayload,
  checkConfigReportedPayload,
} from '../../schemas/validators.js';

const commandId = '0f8fad5b-d9cb-469f-a165-70867728950e';

describe('the command lifecycle', () => {
  it('never moves a command backwards or out of a terminal state', () => {
    for (const from of COMMAND_STATUSES) {
      for (const to of COMMAND_STATUSES) {
        if (!canTransition(from, to)) continue;
        expect(isTerminalCommandStatus(from), `${from} -> ${to}`).toBe(false);
        expect(COMMAND_STATUS_RANK[to], `${from} -> ${to}`).toBeGreaterThan(COMMAND_STATUS_RANK[from]);
      }
    }
  });

  it('lets a command be canceled, rejected or expired only before execution started', () => {
    const before: CommandStatus[] = ['pending', 'delivered'];
    for (const to of ['canceled', 'rejected', 'expired'] as const) {
      for (const from of COMMAND_STATUSES)
        expect(canTransition(from, to), `${from} -> ${to}`).toBe(before.includes(from));
    }
  });

  it('accepts a finished report even when the earlier reports were lost', () => {
    expect(canTransition('pending', 'executed')).toBe(true);
    expect(canTransition('pending', 'executing')).toBe(true);
    expect(canTransition('executing', 'delivered')).toBe(false);
  });

  it('confirms a report only by the same or a later committed state, or by the cleared topic', () => {
    expect(confirmsReport('pending', 'delivered')).toBe(false);
    expect(confirmsReport('delivered', 'delivered')).toBe(true);
    expect(confirmsReport('executing', 'delivered')).toBe(true);
    expect(confirmsReport('executing', 'executed')).toBe(false);
    expect(confirmsReport(null, 'executed')).toBe(true);
    expect(confirmsReport(null, 'delivered')).toBe(true);
  });
});

describe('command types and payloads', () => {
  it('checks built-in payloads and passes other types through to local applications', () => {
    expect(checkCommand('ping', {}).ok).toBe(true);
    expect(checkCommand('ping', { extra: 1 })).toEqual({
      ok: false,
      reason: "ping payload: (root) must NOT have additional properties 'extra'",
    });
    expect(checkCommand('set-setting', { key: 'agent.logLevel', value: 'loud' }).ok).toBe(false);
    expect(checkCommand('set-setting', { key: 'agent.syncIntervalMs', value: 500 }).ok).toBe(true);
    expect(checkCommand('firmware.update', { url: 'https://x' }).ok).toBe(true);
  });

  it('refuses a bad type, a non-object payload and an oversize payload with the reason', () => {
    expect(checkCommand('Bad Type', {})).toMatchObject({ ok: false, reason: expect.stringContaining('must match') });
    expect(checkCommand('reboot', [1])).toEqual({ ok: false, reason: 'command payload must be a JSON object' });
    expect(checkCommand('reboot', { blob: 'x'.repeat(70_000) })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('more than 65536'),
    });
  });

  it('validates an agent setting by its own schema', () => {
    expect(checkAgentSetting('agent.batchMaxRecords', 1001).ok).toBe(false);
    expect(checkAgentSetting('agent.batchMaxRecords', 10).ok).toBe(true);
    expect(checkAgentSetting('agent.unknown', 1)).toEqual({
      ok: false,
      reason: "'agent.unknown' is not an agent setting",
    });
  });
});

describe('downstream payloads', () => {
  it('reads a retained command and refuses one without its status', () => {
    const message = { commandId, type: 'ping', payload: {}, createdAt: '2026-11-29T10:00:00.000Z', status: 'pending' };
    expect(checkCommandMessagePayload(JSON.stringify(message)).ok).toBe(true);
    expect(checkCommandMessagePayload(JSON.stringify({ ...message, status: undefined })).ok).toBe(false);
    expect(checkCommandMessagePayload(JSON.stringify({ ...message, status: 'executed' })).ok).toBe(false);
  });

  it('reads a report and refuses an unknown status or non-JSON', () => {
    expect(checkCommandReportPayload('{"status":"executed","at":"2026-11-29T10:00:00Z","result":[1]}').ok).toBe(true);
    expect(checkCommandReportPayload('{"status":"done","at":"2026-11-29T10:00:00Z"}').ok).toBe(false);
    expect(checkCommandReportPayload('nope')).toMatchObject({
      ok: false,
      reason: expect.stringContaining('not valid JSON'),
    });
  });

  it('never accepts "reported" as a config key', () => {
    expect(checkConfigDesiredPayload('{"key":"reported","value":1,"version":1}').ok).toBe(false);
    expect(checkConfigDesiredPayload('{"key":"agent.logLevel","value":"info","version":2}').ok).toBe(true);
    expect(checkConfigReportedPayload('{"key":"x","version":0,"status":"applied"}').ok).toBe(false);
    expect(checkConfigReportedPayload('{"key":"x","version":3,"status":"rejected","error":"bad"}').ok).toBe(true);
  });
});
