/**
 * G6: the pure decisions about commands (no I/O, clock passed in), unit-tested in
 * tests/unit/downstream-command-rules.test.ts; bridge/downstream/command-service.ts repeats every
 * transition's guard in its SQL (UPDATE … WHERE status IN (COMMAND_TRANSITION_SOURCES[target])),
 * as the telemetry upsert repeats conflict-resolution.ts, so two bridges deciding at once cannot
 * move a command backwards either.
 *
 *   planCommandReport  a device's report: apply (which timestamps to coalesce) or ignore (duplicate/late)
 *   planCancel         an operator's cancel: allowed before execution, else a conflict naming the status
 *   planExpiry         which overdue candidates the sweep expires
 *   commandMessage     the retained truth for a command: its message while live, null (clear) once terminal
 *   commandOrder       publish order: ranks only grow, so a stale read is never published after a newer one
 */
import {
  COMMAND_STATUS_RANK,
  COMMAND_TRANSITION_SOURCES,
  canTransition,
  isTerminalCommandStatus,
  type CommandStatus,
  type LiveCommandStatus,
  type ReportedCommandStatus,
} from '../../schemas/command-lifecycle.js';
import { MAX_STATUS_FUTURE_SKEW_MS } from '../../schemas/limits.js';
import type { CommandMessage, CommandReport } from '../../schemas/messages.js';
import type { CommandView } from './views.js';

/** Timestamp columns a transition fills when they are still NULL (COALESCE), so a skipped step still has one. */
export type CommandTimestampColumn = 'delivered_at' | 'started_at' | 'finished_at' | 'executed_at';

export type CommandReportPlan =
  | {
      kind: 'apply';
      target: ReportedCommandStatus;
      /** the guard: the current status must be one of these */
      sources: readonly CommandStatus[];
      coalesce: readonly CommandTimestampColumn[];
      /** the transition's time: the report's `at`, or now when `at` lies in the future */
      at: Date;
      result: unknown;
      error: string | null;
    }
  | { kind: 'ignore'; reason: 'duplicate' | 'late' };

/** Which timestamps reaching `target` implies (a delivered/started step the edge skipped included). */
export function timestampsFor(target: CommandStatus): CommandTimestampColumn[] {
  switch (target) {
    case 'delivered':
      return ['delivered_at'];
    case 'executing':
      return ['delivered_at', 'started_at'];
    case 'executed':
      return ['delivered_at', 'started_at', 'finished_at', 'executed_at'];
    case 'failed':
      return ['delivered_at', 'started_at', 'finished_at'];
    case 'rejected':
      return ['delivered_at', 'finished_at'];
    case 'expired':
    case 'canceled':
      return ['finished_at'];
    case 'pending':
      return [];
  }
}

/**
 * A report's `at` as the transition time. An edge clock ahead of ours by more than
 * MAX_STATUS_FUTURE_SKEW_MS (the same bound the broker applies to status) gives way to our clock;
 * a clock in the past (a device without RTC before NTP) is kept: it is the device's account.
 */
export function reportTime(at: string, nowMs: number): Date {
  const ms = Date.parse(at);
  if (!Number.isFinite(ms) || ms > nowMs + MAX_STATUS_FUTURE_SKEW_MS) return new Date(nowMs);
  return new Date(ms);
}

export function planCommandReport(current: CommandStatus, report: CommandReport, nowMs: number): CommandReportPlan {
  const target = report.status;
  if (!canTransition(current, target)) {
    return { kind: 'ignore', reason: current === target ? 'duplicate' : 'late' };
  }
  const withResult = target === 'executed' || target === 'failed';
  return {
    kind: 'apply',
    target,
    sources: COMMAND_TRANSITION_SOURCES[target],
    coalesce: timestampsFor(target),
    at: reportTime(report.at, nowMs),
    result: withResult && report.result !== undefined ? report.result : null,
    error: isTerminalCommandStatus(target) && report.error !== undefined ? report.error : null,
  };
}

export type CancelPlan = { ok: true; sources: readonly CommandStatus[] } | { ok: false; reason: string };

export function planCancel(current: CommandStatus): CancelPlan {
  if (canTransition(current, 'canceled')) return { ok: true, sources: COMMAND_TRANSITION_SOURCES.canceled };
  return {
    ok: false,
    reason:
      current === 'executing'
        ? 'too late to cancel: the device has started the command'
        : `too late to cancel: the command is already ${current}`,
  };
}

export interface ExpiryCandidate {
  commandId: string;
  deviceId: string;
  status: CommandStatus;
  /** epoch ms; null never expires */
  expiresAtMs: number | null;
}

/** Candidates the sweep may expire at nowMs: not started (pending/delivered) and past their expiry. */
export function planExpiry(candidates: readonly ExpiryCandidate[], nowMs: number): ExpiryCandidate[] {
  return candidates.filter(
    (candidate) =>
      candidate.expiresAtMs !== null && candidate.expiresAtMs <= nowMs && canTransition(candidate.status, 'expired'),
  );
}

/** The retained truth of a command: its message while live, null once terminal (the topic is cleared). */
export function commandMessage(view: CommandView): CommandMessage | null {
  if (isTerminalCommandStatus(view.status)) return null;
  return {
    commandId: view.commandId,
    type: view.type,
    payload: view.payload,
    createdAt: view.createdAt,
    ...(view.expiresAt !== null ? { expiresAt: view.expiresAt } : {}),
    status: view.status as LiveCommandStatus,
  };
}

/** Publish order of a command topic: the rank of its status; a clear ranks with the terminal states. */
export function commandOrder(message: CommandMessage | null): number[] {
  return [message === null ? COMMAND_STATUS_RANK.executed : COMMAND_STATUS_RANK[message.status]];
}

/** The retained payload of a command topic: JSON of the message, '' for a clear. */
export function commandPayload(message: CommandMessage | null): string {
  return message === null ? '' : JSON.stringify(message);
}

/** Whether a live command is still deliverable at nowMs (not past its expiry). */
export function isDeliverable(view: CommandView, nowMs: number): boolean {
  if (isTerminalCommandStatus(view.status)) return false;
  return view.expiresAt === null || Date.parse(view.expiresAt) > nowMs;
}
