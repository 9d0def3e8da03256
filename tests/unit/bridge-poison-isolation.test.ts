import { describe, expect, it } from 'vitest';
import {
  isTransientFailure,
  judgeSingleWrites,
  shouldIsolate,
  type SingleWriteOutcome,
} from '../../bridge/ingest/poison-isolation.js';

const sqlError = (code: string, message = 'refused') => Object.assign(new Error(message), { code });
const stored: SingleWriteOutcome = { ok: true };
const failed = (error: unknown): SingleWriteOutcome => ({ ok: false, error });

describe('shouldIsolate', () => {
  it('isolates a failed batch of several messages whatever the database said, unless it is unreachable or out of resources', () => {
    for (const error of [
      sqlError('08P01', 'invalid message format'),
      sqlError('22P02'),
      sqlError('23514'),
      sqlError('XX000'),
      sqlError('42P01'),
      new Error('odd'),
    ]) {
      expect(shouldIsolate(2, error)).toBe(true);
    }
    expect(shouldIsolate(2, sqlError('40001'))).toBe(true); // serialization retries exhausted: smaller writes may pass
    expect(shouldIsolate(2, sqlError('57P01'))).toBe(false);
    expect(shouldIsolate(2, Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(false);
    expect(shouldIsolate(2, new Error('Connection terminated unexpectedly'))).toBe(false);
    expect(shouldIsolate(2, sqlError('53100'))).toBe(false);
  });

  it('never isolates a batch of one message (nothing to compare it with)', () => {
    expect(shouldIsolate(1, sqlError('22P02'))).toBe(false);
  });
});

describe('isTransientFailure', () => {
  it('is true for outages and conflicts, false for what the database says about the content', () => {
    expect(isTransientFailure(new Error('Query read timeout'))).toBe(true);
    expect(isTransientFailure(sqlError('40001'))).toBe(true);
    expect(isTransientFailure(sqlError('53200'))).toBe(true);
    expect(isTransientFailure(sqlError('08P01', 'invalid message format'))).toBe(false);
    expect(isTransientFailure(sqlError('23514'))).toBe(false);
  });
});

describe('judgeSingleWrites', () => {
  it('rejects a message that fails alone while another message of the batch is stored', () => {
    expect(judgeSingleWrites([stored, failed(sqlError('08P01', 'invalid message format')), stored], 3)).toEqual({
      poison: [1],
      retry: [],
    });
  });

  it('decides on all the writes: a failure before the first stored message is poison too', () => {
    expect(judgeSingleWrites([failed(sqlError('XX000')), failed(sqlError('22P02')), stored], 3)).toEqual({
      poison: [0, 1],
      retry: [],
    });
  });

  it('rejects nothing when every single write fails: the database is the problem', () => {
    const missing = sqlError('42P01', 'relation "telemetry_data" does not exist');
    expect(judgeSingleWrites([failed(missing), failed(missing), failed(missing)], 3)).toEqual({
      poison: [],
      retry: [0, 1, 2],
    });
    expect(judgeSingleWrites([failed(sqlError('23514')), failed(sqlError('23514'))], 2)).toEqual({
      poison: [],
      retry: [0, 1],
    });
  });

  it('retries, never rejects, a message whose write failed as an outage would, and the messages not written', () => {
    const outage = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(judgeSingleWrites([stored, failed(sqlError('XX000')), failed(outage)], 5)).toEqual({
      poison: [1],
      retry: [2, 3, 4],
    });
    expect(judgeSingleWrites([stored, failed(sqlError('40001'))], 2)).toEqual({ poison: [], retry: [1] });
  });

  it('has nothing to do when every message was stored', () => {
    expect(judgeSingleWrites([stored, stored], 2)).toEqual({ poison: [], retry: [] });
  });
});
