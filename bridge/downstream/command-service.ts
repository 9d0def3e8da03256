/**
 * G6: commands, the service layer the REST API (bridge/api) and the MQTT report handler call. The
 * `commands` table is the truth; every write is one SERIALIZABLE transaction retried on 40001
 * (bridge/db/transaction-retry.ts), and the retained topic devices/{id}/commands/{cid} is
 * published from the committed row right after the commit (retained-publisher.ts), so the
 * instance that wrote a command publishes it at once; other instances pick it up by polling
 * (change-poller.ts) and the reconciler repairs anything lost (reconciler.ts).
 *
 * Forward only: every status change is `UPDATE … WHERE status IN (COMMAND_TRANSITION_SOURCES[target])`
 * (schemas/command-lifecycle.ts), decided first by command-rules.ts on the row read in the same
 * transaction; a late or duplicate report changes nothing and is answered with the current truth.
 */
import { randomUUID } from 'node:crypto';
import {
  COMMAND_STATUSES,
  LIVE_COMMAND_STATUSES,
  isCommandStatus,
  type CommandStatus,
} from '../../schemas/command-lifecycle.js';
import { checkCommand } from '../../schemas/command-types.js';
import type { CommandReport } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import type { Database, Task } from '../db/connection.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import {
  commandMessage,
  commandOrder,
  commandPayload,
  planCancel,
  planCommandReport,
  type CommandTimestampColumn,
} from './command-rules.js';
import { checkDeviceId, checkLimit, decodeCursor, encodeCursor, isUuid } from './cursor.js';
import { DownstreamError } from './errors.js';
import type { RetainedPublisher } from './retained-publisher.js';
import { COMMAND_COLUMNS, commandView, type CommandRow, type CommandView } from './views.js';

export type { CommandView } from './views.js';
export type { CommandReport } from '../../schemas/messages.js';

export interface CommandServiceOptions {
  db: Database;
  publisher: RetainedPublisher;
  /** lifetime of a command created without expiresAt (COMMAND_DEFAULT_TTL_MS) */
  defaultTtlMs: number;
  retry?: TransactionRetryOptions;
  now?: () => number;
}

export interface CreateCommandInput {
  deviceId: string;
  type: string;
  payload: Record<string, unknown>;
  /** ISO 8601; undefined: now + the default TTL; null: never expires */
  expiresAt?: string | null;
}

export interface CommandListFilter {
  deviceId?: string;
  status?: CommandStatus;
  type?: string;
  limit: number;
  /** the `next` of the previous page */
  after?: string;
}

const LIVE = LIVE_COMMAND_STATUSES as readonly string[];

/** Publishes the retained truth of a command (its message, or the clear once terminal). */
export function publishCommandTruth(publisher: RetainedPublisher, view: CommandView): Promise<void> {
  const message = commandMessage(view);
  return publisher.publish(
    topics.command(view.deviceId, view.commandId),
    commandPayload(message),
    commandOrder(message),
  );
}

export class CommandService {
  readonly #db: Database;
  readonly #publisher: RetainedPublisher;
  readonly #defaultTtlMs: number;
  readonly #retry: TransactionRetryOptions;
  readonly #now: () => number;

  constructor(options: CommandServiceOptions) {
    this.#db = options.db;
    this.#publisher = options.publisher;
    this.#defaultTtlMs = options.defaultTtlMs;
    this.#retry = options.retry ?? {};
    this.#now = options.now ?? Date.now;
  }

  async create(input: CreateCommandInput): Promise<CommandView> {
    checkDeviceId(input.deviceId);
    const checked = checkCommand(input.type, input.payload);
    if (!checked.ok) throw new DownstreamError('invalid', checked.reason);
    const nowMs = this.#now();
    let expiresAt: Date | null;
    if (input.expiresAt === undefined) expiresAt = new Date(nowMs + this.#defaultTtlMs);
    else if (input.expiresAt === null) expiresAt = null;
    else {
      const ms = Date.parse(input.expiresAt);
      if (!Number.isFinite(ms))
        throw new DownstreamError('invalid', `expiresAt '${input.expiresAt}' is not an ISO 8601 date-time`);
      if (ms <= nowMs) throw new DownstreamError('invalid', `expiresAt ${input.expiresAt} is not in the future`);
      expiresAt = new Date(ms);
    }
    const commandId = randomUUID();
    const row = await runSerializable(
      this.#db,
      'command-create',
      async (t) => {
        await requireDevice(t, input.deviceId);
        return t.one<CommandRow>(
          `INSERT INTO commands (command_id, device_id, command_type, payload, status, created_at, updated_at, expires_at)
           VALUES ($1, $2, $3, $4:json, 'pending', $5, now(), $6) RETURNING ${COMMAND_COLUMNS}`,
          [commandId, input.deviceId, input.type, checked.value, new Date(nowMs), expiresAt],
        );
      },
      this.#retry,
    );
    const view = commandView(row);
    void publishCommandTruth(this.#publisher, view);
    return view;
  }

  async get(commandId: string): Promise<CommandView | null> {
    if (!isUuid(commandId)) return null;
    const row = await this.#db.oneOrNone<CommandRow>(`SELECT ${COMMAND_COLUMNS} FROM commands WHERE command_id = $1`, [
      commandId,
    ]);
    return row === null ? null : commandView(row);
  }

  /** Newest first; `next` is the cursor of the following page, null on the last one. */
  async list(filter: CommandListFilter): Promise<{ items: CommandView[]; next: string | null }> {
    checkLimit(filter.limit);
    const where: string[] = [];
    const values: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      values.push(value);
      where.push(sql.replace('?', `$${values.length}`));
    };
    if (filter.deviceId !== undefined) {
      checkDeviceId(filter.deviceId);
      add('device_id = ?', filter.deviceId);
    }
    if (filter.status !== undefined) {
      if (!isCommandStatus(filter.status)) {
        throw new DownstreamError(
          'invalid',
          `status must be one of ${COMMAND_STATUSES.join(', ')}, got '${String(filter.status)}'`,
        );
      }
      add('status = ?', filter.status);
    }
    if (filter.type !== undefined) add('command_type = ?', filter.type);
    if (filter.after !== undefined) {
      const [after = ''] = decodeCursor(filter.after, 1);
      if (!isUuid(after)) throw new DownstreamError('invalid', 'the cursor is not one this API handed out');
      add('(created_at, command_id) < (SELECT created_at, command_id FROM commands WHERE command_id = ?)', after);
    }
    values.push(filter.limit + 1);
    const rows = await this.#db.any<CommandRow>(
      `SELECT ${COMMAND_COLUMNS} FROM commands ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, command_id DESC LIMIT $${values.length}`,
      values,
    );
    const items = rows.slice(0, filter.limit).map(commandView);
    const last = items[items.length - 1];
    return { items, next: rows.length > filter.limit && last ? encodeCursor([last.commandId]) : null };
  }

  /** The device's live commands (pending, delivered, executing) that have not expired, oldest first. */
  async liveForDevice(deviceId: string): Promise<CommandView[]> {
    checkDeviceId(deviceId);
    const rows = await this.#db.any<CommandRow>(
      `SELECT ${COMMAND_COLUMNS} FROM commands
       WHERE device_id = $1 AND status IN ($2:csv) AND (expires_at IS NULL OR expires_at > $3)
       ORDER BY created_at, command_id`,
      [deviceId, LIVE, new Date(this.#now())],
    );
    return rows.map(commandView);
  }

  /** Cancels a command that has not started; a conflict (details.status) when it is too late. */
  async cancel(commandId: string): Promise<CommandView> {
    if (!isUuid(commandId)) throw new DownstreamError('not-found', `no command ${commandId}`);
    const at = new Date(this.#now());
    const row = await runSerializable(
      this.#db,
      'command-cancel',
      async (t) => {
        const current = await t.oneOrNone<CommandRow>(`SELECT ${COMMAND_COLUMNS} FROM commands WHERE command_id = $1`, [
          commandId,
        ]);
        if (current === null) throw new DownstreamError('not-found', `no command ${commandId}`);
        const plan = planCancel(current.status as CommandStatus);
        if (!plan.ok) throw new DownstreamError('conflict', plan.reason, { status: current.status });
        // G6: the guard repeats the plan: a report committed meanwhile makes this update miss (40001 first)
        const updated = await t.oneOrNone<CommandRow>(
          `UPDATE commands SET status = 'canceled', canceled_at = $2, finished_at = COALESCE(finished_at, $2),
             error = 'canceled by an operator', updated_at = now()
           WHERE command_id = $1 AND status IN ($3:csv) RETURNING ${COMMAND_COLUMNS}`,
          [commandId, at, plan.sources],
        );
        if (updated === null)
          throw new DownstreamError('conflict', 'too late to cancel: the command moved on', { status: current.status });
        return updated;
      },
      this.#retry,
    );
    const view = commandView(row);
    void publishCommandTruth(this.#publisher, view);
    return view;
  }

  /**
   * Applies a device's report (MQTT devices/{id}/commands/{cid}/result, or REST
   * POST /api/v1/sync/ack/:commandId). `applied` is false for a duplicate or late report, which
   * changes nothing. Either way the current truth is published again, which confirms the report
   * to the edge. not-found when the command does not exist for that device.
   */
  async report(
    deviceId: string,
    commandId: string,
    report: CommandReport,
  ): Promise<{ applied: boolean; command: CommandView; ignored?: 'duplicate' | 'late' }> {
    if (!isUuid(commandId) || !isUuid(deviceId)) {
      throw new DownstreamError('not-found', `no command ${commandId} for device ${deviceId}`);
    }
    const nowMs = this.#now();
    const outcome = await runSerializable(
      this.#db,
      'command-report',
      async (t) => {
        const current = await t.oneOrNone<CommandRow>(
          `SELECT ${COMMAND_COLUMNS} FROM commands WHERE command_id = $1 AND device_id = $2`,
          [commandId, deviceId],
        );
        if (current === null) throw new DownstreamError('not-found', `no command ${commandId} for device ${deviceId}`);
        const plan = planCommandReport(current.status as CommandStatus, report, nowMs);
        if (plan.kind === 'ignore') return { applied: false, row: current, ignored: plan.reason };
        const coalesce = plan.coalesce.map((column: CommandTimestampColumn) => `${column} = COALESCE(${column}, $3)`);
        const updated = await t.oneOrNone<CommandRow>(
          `UPDATE commands SET status = $4, ${coalesce.join(', ')},
             result = COALESCE($5:json::jsonb, result), error = COALESCE($6, error), updated_at = now()
           WHERE command_id = $1 AND device_id = $2 AND status IN ($7:csv) RETURNING ${COMMAND_COLUMNS}`,
          [commandId, deviceId, plan.at, plan.target, plan.result, plan.error, plan.sources],
        );
        return updated === null
          ? { applied: false, row: current, ignored: 'late' as const }
          : { applied: true, row: updated, ignored: undefined };
      },
      this.#retry,
    );
    const view = commandView(outcome.row);
    void publishCommandTruth(this.#publisher, view);
    return outcome.ignored === undefined
      ? { applied: outcome.applied, command: view }
      : { applied: false, command: view, ignored: outcome.ignored };
  }
}

async function requireDevice(t: Task, deviceId: string): Promise<void> {
  const device = await t.oneOrNone<{ device_id: string }>('SELECT device_id FROM devices WHERE device_id = $1', [
    deviceId,
  ]);
  if (device === null) throw new DownstreamError('device-not-found', `no device ${deviceId}`);
}

export { requireDevice };
