import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  classifyError,
  decideRetry,
  DEFAULT_RETRY_POLICY,
  reconnectDelay,
  type BackoffPolicy,
} from '../../common/retry-policy.js';

const exact: BackoffPolicy = { initialDelayMs: 1000, maxDelayMs: 60_000, multiplier: 2, jitter: 'none' };

describe('backoff', () => {
  it('doubles from the initial delay up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => backoffDelay(exact, attempt))).toEqual([
      1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000,
    ]);
  });

  it('keeps jitter inside its band', () => {
    const full = { ...exact, jitter: 'full' as const };
    const equal = { ...exact, jitter: 'equal' as const };
    expect(backoffDelay(full, 3, () => 0)).toBe(0);
    expect(backoffDelay(full, 3, () => 0.999999)).toBe(4000);
    expect(backoffDelay(equal, 3, () => 0)).toBe(2000);
    expect(backoffDelay(equal, 3, () => 0.5)).toBe(3000);
  });
});

describe('retry decisions', () => {
  it('retries network and conflict errors up to maxAttempts', () => {
    expect(decideRetry(DEFAULT_RETRY_POLICY, 1, 'network', () => 0).shouldRetry).toBe(true);
    expect(decideRetry(DEFAULT_RETRY_POLICY, 4, 'conflict', () => 0).shouldRetry).toBe(true);
    expect(decideRetry(DEFAULT_RETRY_POLICY, 5, 'conflict', () => 0)).toEqual({
      shouldRetry: false,
      delayMs: 0,
      maxAttempts: 5,
    });
  });

  it('never retries data or auth errors', () => {
    expect(decideRetry(DEFAULT_RETRY_POLICY, 1, 'data').shouldRetry).toBe(false);
    expect(decideRetry(DEFAULT_RETRY_POLICY, 1, 'auth').shouldRetry).toBe(false);
    expect(decideRetry(DEFAULT_RETRY_POLICY, 1, 'unknown').shouldRetry).toBe(false);
  });

  it('reconnects after an auth failure between half the auth delay and all of it (the ceiling when unset)', () => {
    expect(reconnectDelay(exact, 1, 'auth', () => 0)).toBe(30_000);
    expect(reconnectDelay(exact, 1, 'auth', () => 0.999999)).toBe(60_000);
    expect(reconnectDelay({ ...exact, authFailureDelayMs: 90_000 }, 1, 'auth', () => 0)).toBe(45_000);
    expect(reconnectDelay(exact, 1, 'network')).toBe(1000);
    expect(reconnectDelay(exact, 0, 'network')).toBe(1000);
  });
});

describe('error classification', () => {
  it.each([
    [{ code: '40001', message: 'could not serialize access' }, 'conflict'],
    [{ code: '40P01', message: 'deadlock detected' }, 'conflict'],
    [{ code: '40003', message: 'result is ambiguous (error=rpc error)' }, 'conflict'],
    [{ code: 'XX000', message: 'restart transaction: TransactionRetryWithProtoRefreshError' }, 'conflict'],
    [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, 'network'],
    [{ code: '57P01', message: 'terminating connection' }, 'network'],
    [{ code: 5, message: 'Connection refused: Not authorized' }, 'auth'],
    [{ code: 'CERT_HAS_EXPIRED', message: 'certificate has expired' }, 'auth'],
    [{ code: 'SQLITE_FULL', message: 'database or disk is full' }, 'resource'],
    [{ code: '22P02', message: 'invalid input syntax for type uuid' }, 'data'],
    [{ code: '23503', message: 'violates foreign key constraint' }, 'data'],
    ['a string', 'unknown'],
  ])('%o is %s', (error, expected) => {
    expect(classifyError(error)).toBe(expected);
  });
});
