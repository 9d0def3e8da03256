/**
 * Reading configuration from the environment with clear errors. Each process owns its loader
 * (broker/config.ts, edge/config.ts, bridge/config.ts), built from these parsers.
 *
 * Integers are decimal digits only: Number() would also take '1e3', '0x10', ' 12 ' or '1_000'
 * and turn a typo into a silently different setting.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type Env = Record<string, string | undefined>;

const DECIMAL_INTEGER = /^-?\d{1,16}$/;

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
