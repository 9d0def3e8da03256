/**
 * G6: what the edge does with a command message, a cleared command topic, and a command about to
 * start (pure: the clock is a parameter, nothing here does I/O). edge/downstream/downstream.ts
 * stores each decision (edge/store/downstream-store.ts) before it reports anything.
 *
 *   new command        expired (expiresAt ≤ now)      -> expired, never started
 *                      invalid type or payload        -> rejected with the reason (checkCommand)
 *                      otherwise                      -> delivered (persisted first, then reported)
 *   known command      never executed again; its unconfirmed report is confirmed when the retained
 *                      status is at or past it (confirmsReport)
 *   cleared topic      not started (delivered)        -> canceled locally, never started
 *                      report pending                 -> the clear confirms it
 *   about to start     only from delivered, and only if not expired by now
 */
import { confirmsReport, type LiveCommandStatus, type ReportedCommandStatus } from '../../schemas/command-lifecycle.js';
import { checkCommand } from '../../schemas/command-types.js';
import { MAX_COMMAND_RESULT_BYTES } from '../../schemas/limits.js';
import type { CommandMessage, CommandReport } from '../../schemas/messages.js';
import type { LocalCommandStatus } from '../store/downstream-store.js';

/** The schema's bound on `error` (schemas/command-result.schema.json). */
export const MAX_REPORT_ERROR_CHARS = 1024;

export interface ArrivalDecision {
  status: Extract<LocalCommandStatus, 'delivered' | 'rejected' | 'expired'>;
  report: ReportedCommandStatus;
  error?: string;
}

export function expiresAtMs(message: Pick<CommandMessage, 'expiresAt'>): number | null {
  return message.expiresAt === undefined ? null : Date.parse(message.expiresAt);
}

/** A command the edge has never seen. */
export function decideNewCommand(message: CommandMessage, nowMs: number): ArrivalDecision {
  const expires = expiresAtMs(message);
  if (expires !== null && expires <= nowMs) {
    return {
      status: 'expired',
      report: 'expired',
      error: `the command expired at ${message.expiresAt ?? ''} before the edge could start it`,
    };
  }
  const valid = checkCommand(message.type, message.payload);
  if (!valid.ok) return { status: 'rejected', report: 'rejected', error: boundedError(valid.reason) };
  return { status: 'delivered', report: 'delivered' };
}

export interface ReportState {
  reportStatus: ReportedCommandStatus | null;
  reportConfirmed: boolean;
}

/** Whether a retained status (null: the topic was cleared) confirms the command's pending report. */
export function confirmsPendingReport(stored: ReportState, retained: LiveCommandStatus | null): boolean {
  if (stored.reportConfirmed || stored.reportStatus === null) return false;
  return confirmsReport(retained, stored.reportStatus);
}

export type ClearDecision = 'cancel' | 'confirm' | 'nothing';

/** A cleared (empty retained) command topic: canceled or expired in the control plane, or our terminal report committed. */
export function decideCleared(stored: (ReportState & { status: LocalCommandStatus }) | null): ClearDecision {
  if (stored === null) return 'nothing';
  // not started: the control plane canceled or expired it; never start it
  if (stored.status === 'delivered') return 'cancel';
  return confirmsPendingReport(stored, null) ? 'confirm' : 'nothing';
}

export type StartDecision = 'start' | 'expired' | 'skip';

/** Just before execution: only a delivered command that has not expired by now starts. */
export function decideStart(
  stored: { status: LocalCommandStatus; expiresAtMs: number | null },
  nowMs: number,
): StartDecision {
  if (stored.status !== 'delivered') return 'skip';
  if (stored.expiresAtMs !== null && stored.expiresAtMs <= nowMs) return 'expired';
  return 'start';
}

/** Longest accepted per-command timeout from payload.timeoutMs (one day). */
export const MAX_LOCAL_COMMAND_TIMEOUT_MS = 86_400_000;

/** A local application's time to answer: payload.timeoutMs (a positive integer up to a day) or the default. */
export function localCommandTimeoutMs(payload: Record<string, unknown>, defaultMs: number): number {
  const asked = payload['timeoutMs'];
  if (typeof asked === 'number' && Number.isInteger(asked) && asked > 0 && asked <= MAX_LOCAL_COMMAND_TIMEOUT_MS) {
    return asked;
  }
  return defaultMs;
}

export function boundedError(reason: string): string {
  const text = reason.trim() === '' ? 'no reason given' : reason;
  return text.length <= MAX_REPORT_ERROR_CHARS ? text : `${text.slice(0, MAX_REPORT_ERROR_CHARS - 1)}…`;
}

export interface Finished {
  status: 'executed' | 'failed';
  result?: unknown;
  error?: string;
}

/**
 * The terminal report of a finished command, within MAX_COMMAND_RESULT_BYTES: a result too large
 * (or not JSON) turns the command into `failed` with the reason instead of a report the bridge
 * would refuse forever.
 */
export function terminalReport(finished: Finished, atIso: string): CommandReport {
  const report: CommandReport =
    finished.status === 'executed'
      ? { status: 'executed', at: atIso, ...(finished.result === undefined ? {} : { result: finished.result }) }
      : { status: 'failed', at: atIso, error: boundedError(finished.error ?? 'failed without a reason') };
  let bytes: number;
  try {
    bytes = Buffer.byteLength(JSON.stringify(report));
  } catch (error) {
    return { status: 'failed', at: atIso, error: boundedError(`the result is not JSON: ${(error as Error).message}`) };
  }
  if (bytes > MAX_COMMAND_RESULT_BYTES) {
    return {
      status: 'failed',
      at: atIso,
      error: `the result is ${bytes} bytes as a report, more than ${MAX_COMMAND_RESULT_BYTES} (MAX_COMMAND_RESULT_BYTES)`,
    };
  }
  return report;
}
