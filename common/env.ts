/**
 * Reading configuration from the environment with clear errors. Each process owns its loader
 * (broker/config.ts, edge/config.ts, bridge/config.ts), built from these parsers.
 *
 * Integers are decimal digits only: Number() would also take '1e3', '0x10', ' 12 ' or '1_000'
 * and turn a typo into a silently different setting. An empty variable counts as unset (the
 * default applies), as with Docker Compose's `VAR:` and `VAR=`. Every refusal is a ConfigError
 * whose message starts with the variable's name (tests/unit/<process>-config.test.ts check each).
 */
import { isIP } from 'node:net';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type Env = Record<string, string | undefined>;

const DECIMAL_INTEGER = /^-?\d{1,16}$/;

/** Longest delay a Node.js timer takes; a longer one fires after 1 ms instead (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2_147_483_647;

export function envString(env: Env, name: string, fallback?: string): string {
  const raw = env[name];
  if (raw !== undefined && raw !== '') return raw;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${name} is required`);
}

export function envOptional(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

export function envInt(env: Env, name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = DECIMAL_INTEGER.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value))
    throw new ConfigError(`${name} must be an integer, got '${raw}' (decimal digits only)`);
  if (range.min !== undefined && value < range.min)
    throw new ConfigError(`${name} must be ≥ ${range.min}, got ${value}`);
  if (range.max !== undefined && value > range.max)
    throw new ConfigError(`${name} must be ≤ ${range.max}, got ${value}`);
  return value;
}

export function envBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got '${raw}'`);
}

/** A DNS name (letters, digits, '-', '_' in dot-separated labels), without scheme or port. */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

/** An address to listen on: an IPv4 or IPv6 address (without brackets) or a host name. */
export function envHost(env: Env, name: string, fallback: string): string {
  const value = envString(env, name, fallback);
  if (isIP(value) === 0 && !HOST_NAME.test(value)) {
    throw new ConfigError(
      `${name} must be an IP address or a host name (no scheme, port or brackets), got '${redactUrlCredentials(value)}'`,
    );
  }
  return value;
}

/** mqtt://host:port or mqtts://host:port (mqtt:// only for tests). */
export function envMqttUrl(env: Env, name: string): string {
  const value = envString(env, name);
  if (!/^mqtts?:\/\/[^/?#\s]+(\/)?$/.test(value)) {
    throw new ConfigError(`${name} must look like mqtts://host:port, got '${redactUrlCredentials(value)}'`);
  }
  return value;
}

/** The URL with anything before its last '@' (user and password) masked, for logs and errors. */
export function redactUrlCredentials(raw: string): string {
  if (!raw.includes('@')) return raw;
  // greedy up to the last '@': a password with an unescaped '/' or '@' is masked too
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/i, (_match, scheme: string | undefined) => `${scheme ?? ''}***@`);
}
