/**
 * G6: expires overdue commands. Every EXPIRY_SWEEP_MS the bridge reads the commands that have not
 * started (pending, delivered) and whose expires_at has passed (partial index
 * idx_commands_expiry), lets command-rules.ts planExpiry decide with the injected clock, marks
 * them `expired` with a guarded UPDATE (… AND status IN ('pending', 'delivered')), so a command
 * that started meanwhile is left alone, and clears their retained topics: a device that comes
 * back after a week never sees them. Bounded: 500 commands per transaction, 20 per sweep run.
 * Several bridges may sweep at once; the guard makes the second one a no-op.
 */
import { COMMAND_TRANSITION_SOURCES, type CommandStatus } from '../../schemas/command-lifecycle.js';
import type { Database } from '../db/connection.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import { planExpiry } from './command-rules.js';
import { publishCommandTruth } from './command-service.js';
import type { RetainedPublisher } from './retained-publisher.js';
import { COMMAND_COLUMNS, commandView, type CommandRow } from './views.js';

export interface ExpirySweepOptions {
  db: Database;
  publisher: RetainedPublisher;
  now?: () => number;
  retry?: TransactionRetryOptions;
  batchSize?: number;
}

/** One sweep; returns how many commands it expired. */
export async function sweepExpiredCommands(options: ExpirySweepOptions): Promise<number> {
  const { db, publisher } = options;
  const batchSize = options.batchSize ?? 500;
  const sources = COMMAND_TRANSITION_SOURCES.expired;
  let expired = 0;
  for (let round = 0; round < 20; round += 1) {
    const nowMs = (options.now ?? Date.now)();
    const now = new Date(nowMs);
    const candidates = await db.any<{ command_id: string; device_id: string; status: string; expires_at: Date | null }>(
      `SELECT command_id, device_id, status, expires_at FROM commands
       WHERE status IN ($1:csv) AND expires_at <= $2 ORDER BY expires_at LIMIT $3`,
      [sources, now, batchSize],
    );
    const due = planExpiry(
      candidates.map((row) => ({
        commandId: row.command_id,
        deviceId: row.device_id,
        status: row.status as CommandStatus,
        expiresAtMs: row.expires_at?.getTime() ?? null,
      })),
      nowMs,
    );
    if (due.length === 0) break;
    const rows = await runSerializable(
      db,
      'command-expire',
      (t) =>
        t.any<CommandRow>(
          `UPDATE commands SET status = 'expired', finished_at = COALESCE(finished_at, $2),
             error = COALESCE(error, 'not started by its expiresAt'), updated_at = now()
           WHERE command_id IN ($1:csv) AND status IN ($3:csv) AND expires_at <= $2
           RETURNING ${COMMAND_COLUMNS}`,
          [due.map((candidate) => candidate.commandId), now, sources],
        ),
      options.retry,
    );
    await Promise.all(rows.map((row) => publishCommandTruth(publisher, commandView(row))));
    expired += rows.length;
    if (candidates.length < batchSize) break;
  }
  return expired;
}
