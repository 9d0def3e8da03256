/**
 * G6: the pure decisions about device config (no I/O), unit-tested in
 * tests/unit/downstream-config-rules.test.ts; bridge/downstream/config-service.ts repeats the
 * report guard in SQL (… WHERE reported_version IS NULL OR reported_version < $version).
 *
 *   checkConfigWrite   a key and value an operator may set (CONFIG_KEY_PATTERN, MAX_CONFIG_VALUE_BYTES, agent.* schema)
 *   planConfigReport   a device's report: apply, ignore (older or same version) or refuse (why)
 *   configDesired      the retained truth of a key: {key, value, version, reportedVersion?}, null when deleted
 *   configOrder        publish order (version, deleted, reportedVersion): only grows
 *   isLagging          the current version is not applied (not reported yet, older, or rejected)
 */
import { CONFIG_KEY_PATTERN, MAX_CONFIG_VALUE_BYTES } from '../../schemas/limits.js';
import type { ConfigDesired, ConfigReported } from '../../schemas/messages.js';
import { checkAgentSetting, type Validation } from '../../schemas/validators.js';
import type { ConfigState, ConfigView } from './views.js';

export function checkConfigKey(key: string): Validation<string> {
  return CONFIG_KEY_PATTERN.test(key)
    ? { ok: true, value: key }
    : { ok: false, reason: `config key '${key}' must match ${String(CONFIG_KEY_PATTERN)}` };
}

export function checkConfigWrite(key: string, value: unknown): Validation<unknown> {
  const keyCheck = checkConfigKey(key);
  if (!keyCheck.ok) return keyCheck;
  if (value === undefined) return { ok: false, reason: 'config value is missing (any JSON value, null included)' };
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    return { ok: false, reason: `config value is not JSON: ${(error as Error).message}` };
  }
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_CONFIG_VALUE_BYTES) {
    return { ok: false, reason: `config value is ${bytes} bytes, more than ${MAX_CONFIG_VALUE_BYTES}` };
  }
  if (key.startsWith('agent.')) {
    const setting = checkAgentSetting(key, value);
    if (!setting.ok) return { ok: false, reason: `${key}: ${setting.reason}` };
  }
  return { ok: true, value };
}

export type ConfigReportPlan =
  | { kind: 'apply' }
  | { kind: 'ignore'; reason: 'duplicate' | 'older' }
  | { kind: 'refuse'; code: 'not-found' | 'invalid'; reason: string };

export function planConfigReport(current: ConfigState | null, report: ConfigReported): ConfigReportPlan {
  if (current === null || current.deleted) {
    return { kind: 'refuse', code: 'not-found', reason: `config key '${report.key}' is not set for this device` };
  }
  if (report.version > current.version) {
    return {
      kind: 'refuse',
      code: 'invalid',
      reason: `reported version ${report.version} of '${report.key}' is newer than the desired version ${current.version}`,
    };
  }
  if (current.reportedVersion !== null && report.version <= current.reportedVersion) {
    return { kind: 'ignore', reason: report.version === current.reportedVersion ? 'duplicate' : 'older' };
  }
  return { kind: 'apply' };
}

export function configDesired(state: ConfigState): ConfigDesired | null {
  if (state.deleted) return null;
  return {
    key: state.key,
    value: state.value,
    version: state.version,
    ...(state.reportedVersion !== null ? { reportedVersion: state.reportedVersion } : {}),
  };
}

export function configOrder(state: Pick<ConfigState, 'version' | 'deleted' | 'reportedVersion'>): number[] {
  return [state.version, state.deleted ? 1 : 0, state.reportedVersion ?? 0];
}

export function configPayload(desired: ConfigDesired | null): string {
  return desired === null ? '' : JSON.stringify(desired);
}

export function isLagging(view: ConfigView): boolean {
  return view.reportedVersion === null || view.reportedVersion < view.version || view.reportedStatus !== 'applied';
}
