/**
 * G6: the command lifecycle, one definition for the bridge (SQL guards, REST), the edge and the
 * docs. Pure.
 *
 *   pending ──► delivered ──► executing ──► executed | failed
 *      │            │
 *      ├────────────┴──► rejected | expired | canceled
 *
 *   pending    stored in the control plane, published retained on devices/{id}/commands/{cid}
 *   delivered  the edge persisted it in its command_queue and said so (never because a broker took it)
 *   executing  the edge started it
 *   executed   finished, with a result          (terminal)
 *   failed     started and did not finish well  (terminal; also an agent crash while executing)
 *   rejected   refused by the edge: unknown type, invalid payload (terminal)
 *   expired    not started by expires_at: the bridge's sweep or the edge, which never starts one (terminal)
 *   canceled   by an operator, only before execution started (terminal)
 *
 * States only move forward: a transition is allowed when the target's rank is higher than the
 * current one's and the current state is not terminal. A late or duplicate report is a no-op.
 */

export const COMMAND_STATUSES = [
  'pending',
  'delivered',
  'executing',
  'executed',
  'failed',
  'rejected',
  'expired',
  'canceled',
] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

/** States a retained command message can carry (the live ones). */
export const LIVE_COMMAND_STATUSES = ['pending', 'delivered', 'executing'] as const;
export type LiveCommandStatus = (typeof LIVE_COMMAND_STATUSES)[number];

/** States an edge reports on devices/{id}/commands/{cid}/result. */
export const REPORTED_COMMAND_STATUSES = [
  'delivered',
  'executing',
  'executed',
  'failed',
  'rejected',
  'expired',
] as const;
export type ReportedCommandStatus = (typeof REPORTED_COMMAND_STATUSES)[number];

export const TERMINAL_COMMAND_STATUSES: ReadonlySet<CommandStatus> = new Set([
  'executed',
  'failed',
  'rejected',
  'expired',
  'canceled',
]);

/** Order used by the forward-only rule; every terminal state ranks above every live one. */
export const COMMAND_STATUS_RANK: Readonly<Record<CommandStatus, number>> = {
  pending: 0,
  delivered: 1,
  executing: 2,
  executed: 3,
  failed: 3,
  rejected: 3,
  expired: 3,
  canceled: 3,
};

/** States from which each target may be reached (the SQL guards use these lists). */
export const COMMAND_TRANSITION_SOURCES: Readonly<Record<CommandStatus, readonly CommandStatus[]>> = {
  pending: [],
  delivered: ['pending'],
  executing: ['pending', 'delivered'],
  executed: ['pending', 'delivered', 'executing'],
  failed: ['pending', 'delivered', 'executing'],
  rejected: ['pending', 'delivered'],
  expired: ['pending', 'delivered'],
  canceled: ['pending', 'delivered'],
};

export function isTerminalCommandStatus(status: CommandStatus): boolean {
  return TERMINAL_COMMAND_STATUSES.has(status);
}

export function isCommandStatus(value: string): value is CommandStatus {
  return (COMMAND_STATUSES as readonly string[]).includes(value);
}

/** True when `to` may follow `from` (forward only, never out of a terminal state). */
export function canTransition(from: CommandStatus, to: CommandStatus): boolean {
  return COMMAND_TRANSITION_SOURCES[to].includes(from);
}

/**
 * Whether a retained command message (or its absence: null, the topic was cleared) confirms a
 * report the edge sent: the control plane has committed that status or a later one.
 */
export function confirmsReport(retained: LiveCommandStatus | null, reported: ReportedCommandStatus): boolean {
  if (retained === null) return true;
  if (isTerminalCommandStatus(reported)) return false;
  return COMMAND_STATUS_RANK[retained] >= COMMAND_STATUS_RANK[reported];
}
