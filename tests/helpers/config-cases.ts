/**
 * Table-driven checks of a process's environment loader (tests/unit/<process>-config.test.ts):
 * every variable gets bad values whose ConfigError must name it, every integer variable gets the
 * malformed forms common/env.ts refuses, and the tables are compared with the variables the
 * loader documents and reads, so a new variable without a test (or without documentation) fails.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, type Env } from '../../common/env.js';

const root = join(import.meta.dirname, '..', '..');

/** Forms Number() would accept (or half-accept) that envInt must refuse. */
export const MALFORMED_INTEGERS = [
  '1e3',
  '0x10',
  '0b11',
  ' 12',
  '12 ',
  '1_000',
  '12.0',
  '+12',
  '12abc',
  'twelve',
  ' ',
  '１２', // full-width digits
  '99999999999999999', // 17 digits: past Number.MAX_SAFE_INTEGER
];

export interface IntegerVariable<Config> {
  name: string;
  min: number;
  max?: number;
  /** what an unset or empty variable gives; undefined for an optional setting */
  fallback: number | undefined;
  /** where the loaded configuration keeps it (in the variable's own unit) */
  read: (config: Config) => number | undefined;
}

export interface BadValue {
  name: string;
  value: string;
  /** other variables the case needs (e.g. the other two TLS paths, readable) */
  with?: Env;
  /** the ConfigError's whole message, or a pattern for it; it must name the variable */
  message: RegExp | string;
}

/** The environment of a bad-value case. */
export function envOf(badValue: BadValue): Env {
  return { ...badValue.with, [badValue.name]: badValue.value };
}

/** Checks that `error` names the variable and says what the case expects. */
export function expectNamed(error: ConfigError, badValue: BadValue): void {
  expect(error.message).toMatch(new RegExp(`(?<![A-Z0-9_])${badValue.name}(?![A-Z0-9_])`));
  if (typeof badValue.message === 'string') expect(error.message).toBe(badValue.message);
  else expect(error.message).toMatch(badValue.message);
}

/** it.each rows with a readable title: [name, value, case] for `refuses %s='%s' …`. */
export function titled(badValues: BadValue[]): [string, string, BadValue][] {
  return badValues.map((badValue) => [badValue.name, badValue.value, badValue]);
}

/** The ConfigError that `load` throws for `env`; fails when it throws nothing or something else. */
export function configErrorOf(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

/** The cases of one integer variable: every malformed form, below min (and negative), above max. */
export function integerCases<Config>(variable: IntegerVariable<Config>): { value: string; message: string }[] {
  const { name, min, max } = variable;
  const cases = MALFORMED_INTEGERS.map((value) => ({
    value,
    message: `${name} must be an integer, got '${value}' (decimal digits only)`,
  }));
  cases.push({ value: String(min - 1), message: `${name} must be ≥ ${min}, got ${min - 1}` });
  if (min > 0) cases.push({ value: '-1', message: `${name} must be ≥ ${min}, got -1` });
  if (max !== undefined) cases.push({ value: String(max + 1), message: `${name} must be ≤ ${max}, got ${max + 1}` });
  return cases;
}

/** Variables a config file documents in its header comment: lines ` *   NAME[, NAME…]  description`. */
export function documentedVariables(file: string): string[] {
  const source = readFileSync(join(root, file), 'utf8');
  const header = source.slice(0, source.indexOf('*/'));
  const names: string[] = [];
  for (const match of header.matchAll(/^ \* {3}((?:[A-Z][A-Z0-9_]+)(?:, [A-Z][A-Z0-9_]+)*)\s/gm)) {
    names.push(...(match[1] ?? '').split(', '));
  }
  return names.sort();
}

/**
 * Variables a config file reads: every 'UPPER_SNAKE' string literal in it, plus SHUTDOWN_GRACE_MS
 * when it calls shutdownGraceFromEnv (common/process-lifecycle.ts).
 */
export function variablesReadIn(file: string): string[] {
  const source = readFileSync(join(root, file), 'utf8');
  const names = new Set([...source.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g)].map((match) => match[1] ?? ''));
  if (source.includes('shutdownGraceFromEnv(env)')) names.add('SHUTDOWN_GRACE_MS');
  return [...names].sort();
}

/**
 * The shared table tests of one loader: for each integer variable its malformed forms and both
 * bounds (an empty value is unset), and for each bad value a ConfigError that names it. `load`
 * gets the process's required variables merged with the case's own.
 */
export function describeVariableTables<Config>(
  load: (env: Env) => Config,
  required: Env,
  integerVariables: IntegerVariable<Config>[],
  badValues: BadValue[],
): void {
  describe.each(integerVariables)('$name', (variable) => {
    it.each(integerCases(variable))(
      `refuses ${variable.name}=$value with a ConfigError naming it`,
      ({ value, message }) => {
        expect(configErrorOf(() => load({ ...required, [variable.name]: value })).message).toBe(message);
      },
    );

    it('takes an empty value as unset, and accepts both bounds', () => {
      expect(variable.read(load({ ...required, [variable.name]: '' }))).toBe(variable.fallback);
      expect(variable.read(load({ ...required, [variable.name]: String(variable.min) }))).toBe(variable.min);
      if (variable.max !== undefined) {
        expect(variable.read(load({ ...required, [variable.name]: String(variable.max) }))).toBe(variable.max);
      }
    });
  });

  it.each(titled(badValues))("refuses %s='%s' with a ConfigError naming it", (_name, _value, badValue) => {
    expectNamed(
      configErrorOf(() => load({ ...required, ...envOf(badValue) })),
      badValue,
    );
  });
}
