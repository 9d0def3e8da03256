/**
 * Pure retry and backoff decisions (no timers, no I/O), shared by the edge uplink's reconnects
 * and the bridge's transaction retries. Defaults for an operation: 1 s initial, ×2, 60 s cap,
 * 5 attempts. Reconnects never give up; the edge's reconnect defaults and why they are what they
 * are: edge/uplink/reconnect-scheduler.ts.
 */

export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  multiplier: number;
  /** 'full': uniform in [0, d]; 'equal': d/2 + uniform in [0, d/2]; 'none': exactly d */
  jitter: 'full' | 'equal' | 'none';
}

export interface RetryPolicy extends BackoffPolicy {
  /** total attempts including the first; Infinity retries forever */
  maxAttempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  initialDelayMs: 1000,
  maxDelayMs: 60_000,
  multiplier: 2,
  jitter: 'equal',
  maxAttempts: 5,
};

/** Delay before retry number `attempt` (1 = the first retry). `random` returns [0, 1). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(policy, attempt);
  switch (policy.jitter) {
    case 'none':
      return Math.round(ceiling);
    case 'full':
      return Math.round(random() * ceiling);
    case 'equal':
      return Math.round(ceiling / 2 + random() * (ceiling / 2));
  }
}

export type ErrorClass = 'network' | 'auth' | 'data' | 'conflict' | 'resource' | 'unknown';

export interface RetryDecision {
  shouldRetry: boolean;
  delayMs: number;
  maxAttempts: number;
}

/**
 * Whether to try again after `attemptsMade` failed attempts of an operation whose last error was
 * of class `errorClass`. Network, conflict (SQLSTATE 40001/40P01) and resource errors are retried
 * with backoff; data errors never (the input will not get better); auth errors never for an
 * operation (a reconnect loop decides on its own, see reconnectDelay).
 */
export function decideRetry(
  policy: RetryPolicy,
  attemptsMade: number,
  errorClass: ErrorClass,
  random: () => number = Math.random,
): RetryDecision {
  const retryable = errorClass === 'network' || errorClass === 'conflict' || errorClass === 'resource';
  const shouldRetry = retryable && attemptsMade < policy.maxAttempts;
  return {
    shouldRetry,
    delayMs: shouldRetry ? backoffDelay(policy, attemptsMade, random) : 0,
    maxAttempts: policy.maxAttempts,
  };
}

/**
 * A reconnect loop that never gives up (the edge uplink): backoff for network and other errors,
 * a separate, longer delay after an authentication failure.
 */
export interface ReconnectPolicy extends BackoffPolicy {
  /**
   * every reconnect after an authentication failure waits between half of this and this (equal
   * jitter): a revoked or wrong certificate does not get better by hammering the broker, but a
   * replaced one is picked up; the jitter keeps a fleet refused at once (a CA rotated on the
   * broker first) from coming back in lockstep; default maxDelayMs
   */
  authFailureDelayMs?: number;
}

/**
 * Delay before the next reconnect after `consecutiveFailures` failures in a row (1 = the first
 * retry after losing or failing a connection), the last one of class `lastErrorClass`.
 * `random` returns [0, 1).
 */
export function reconnectDelay(
  policy: ReconnectPolicy,
  consecutiveFailures: number,
  lastErrorClass: ErrorClass,
  random: () => number = Math.random,
): number {
  if (lastErrorClass === 'auth') return Math.round(authWindow(policy) / 2 + random() * (authWindow(policy) / 2));
  return backoffDelay(policy, Math.max(1, consecutiveFailures), random);
}

/** The longest delay after an authentication failure. */
export function authWindow(policy: ReconnectPolicy): number {
  return policy.authFailureDelayMs ?? policy.maxDelayMs;
}

/** The upper end of the delay before retry `consecutiveFailures` (its jitter window for 'full'). */
export function backoffCeiling(policy: BackoffPolicy, consecutiveFailures: number): number {
  const exponent = Math.max(0, consecutiveFailures - 1);
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * Math.pow(policy.multiplier, exponent));
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_PREMATURE_CLOSE',
  // PostgreSQL / CockroachDB: connection failures and "cannot connect now"
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '57P01',
  '57P02',
  '57P03',
]);
// 40003: CockroachDB's "result is ambiguous" (the commit may or may not have happened). Retrying
// is safe only for idempotent transactions, which every transaction of this project is (guarded
// upserts, name-based conflict ids); see CockroachDB's "common errors" page.
const CONFLICT_CODES = new Set(['40001', '40P01', '40003']);
const RESOURCE_CODES = new Set([
  'ENOSPC',
  'ENOMEM',
  'EMFILE',
  'SQLITE_FULL',
  'SQLITE_BUSY',
  '53000',
  '53100',
  '53200',
  '53300',
]);
const AUTH_CODES = new Set([
  '28000',
  '28P01',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
]);

/** Classifies an error from node, TLS, mqtt.js (CONNACK codes) or PostgreSQL/CockroachDB (SQLSTATE). */
export function classifyError(error: unknown): ErrorClass {
  if (typeof error !== 'object' || error === null) return 'unknown';
  const { code: rawCode, message: rawMessage } = error as { code?: unknown; message?: unknown };
  const code = typeof rawCode === 'string' || typeof rawCode === 'number' ? String(rawCode) : '';
  const message = typeof rawMessage === 'string' ? rawMessage : '';
  if (CONFLICT_CODES.has(code) || /restart transaction/i.test(message)) return 'conflict';
  if (AUTH_CODES.has(code) || /not authorized|bad user name or password|certificate|handshake/i.test(message)) {
    return 'auth';
  }
  // mqtt.js puts the CONNACK return code in `code` as a number: 4 bad credentials, 5 not authorized
  if (code === '4' || code === '5' || code === '134' || code === '135') return 'auth';
  if (NETWORK_CODES.has(code) || /timed? ?out|connection (closed|terminated|reset)|socket hang up/i.test(message)) {
    return 'network';
  }
  if (RESOURCE_CODES.has(code)) return 'resource';
  if (/^(22|23|42)/.test(code)) return 'data';
  return 'unknown';
}
