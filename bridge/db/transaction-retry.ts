/**
 * Every transaction of the bridge runs through runSerializable: SERIALIZABLE isolation (the only
 * level CockroachDB guarantees, and what the tests' PostgreSQL runs at), and on a serialization
 * failure (SQLSTATE 40001, or a deadlock 40P01) the WHOLE transaction function runs again, after a
 * short backoff. The callback must therefore be safe to re-run: no side effects outside `t`.
 * When to retry and how long to wait is decided by common/retry-policy.
 */
import { classifyError, decideRetry, type RetryPolicy } from '../../common/retry-policy.js';
import { pgp, type Database, type Task } from './connection.js';

/** Serialization conflicts clear quickly: retry fast, a bounded number of times. */
export const TRANSACTION_RETRY_POLICY: RetryPolicy = {
  initialDelayMs: 5,
  maxDelayMs: 250,
  multiplier: 2,
  jitter: 'full',
  maxAttempts: 10,
};

export interface TransactionRetryEvent {
  label: string;
  /** 1 for the first retry */
  retry: number;
  delayMs: number;
  error: unknown;
}

export interface TransactionRetryOptions {
  policy?: RetryPolicy;
  /** called before each retry (metrics, logging) */
  onRetry?: (event: TransactionRetryEvent) => void;
}

const SERIALIZABLE = new pgp.txMode.TransactionMode({ tiLevel: pgp.txMode.isolationLevel.serializable });

export async function runSerializable<T>(
  db: Database,
  label: string,
  work: (t: Task) => Promise<T>,
  options: TransactionRetryOptions = {},
): Promise<T> {
  const policy = options.policy ?? TRANSACTION_RETRY_POLICY;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await db.tx({ tag: label, mode: SERIALIZABLE }, work);
    } catch (error) {
      const errorClass = classifyError(error);
      if (errorClass !== 'conflict') throw error;
      const decision = decideRetry(policy, attempt, errorClass);
      if (!decision.shouldRetry) throw error;
      options.onRetry?.({ label, retry: attempt, delayMs: decision.delayMs, error });
      await sleep(decision.delayMs);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
