/**
 * G6 on the edge: the SQL of the downstream half, commands (command_queue) and config
 * (device_config), on the same libSQL connection as the telemetry store (./database.ts) but in
 * functions of its own. Decisions are made by the pure modules of edge/downstream/; this file only
 * stores them, each change in one statement or one transaction, and guards every command
 * transition in the UPDATE itself (`WHERE status IN (…)`), so two racing paths (a cancel and the
 * start of execution, say) cannot both win.
 *
 *   - a command is inserted before its `delivered` report is sent (the report is part of the row);
 *   - every row carries its latest report and whether the control plane confirmed it: the
 *     re-sender reads the unconfirmed ones after a restart, so a report (and a result) is never lost;
 *   - device_config.version is the newest version handled (applied or rejected), config_value the
 *     value in effect (applied_version): an older version never downgrades, also after a restart.
 */
import type { ReportedCommandStatus } from '../../schemas/command-lifecycle.js';
import { newId } from '../../common/ids.js';
import { inWriteTransaction, type EdgeDatabase } from './database.js';

/** Local command states: the lifecycle's, without pending (a row exists only once persisted). */
export type LocalCommandStatus =
  | 'delivered'
  | 'executing'
  | 'executed'
  | 'failed'
  | 'rejected'
  | 'expired'
  | 'canceled';

export interface StoredCommand {
  commandId: string;
  type: string;
  /** JSON text of the command's payload */
  payload: string;
  createdAt: string | null;
  expiresAtMs: number | null;
  status: LocalCommandStatus;
  receivedAtMs: number;
  startedAtMs: number | null;
  finishedAtMs: number | null;
  /** JSON text of the result */
  result: string | null;
  error: string | null;
  reportStatus: ReportedCommandStatus | null;
  reportAtMs: number | null;
  reportConfirmed: boolean;
}

export interface NewCommand {
  commandId: string;
  type: string;
  payload: string;
  createdAt: string | null;
  expiresAtMs: number | null;
  status: LocalCommandStatus;
  receivedAtMs: number;
  error: string | null;
  /** the report to send (null: none, e.g. nothing to say) */
  report: ReportedCommandStatus | null;
}

export interface CommandTransition {
  from: readonly LocalCommandStatus[];
  to: LocalCommandStatus;
  atMs: number;
  /** the report that goes with the new state; null: none (canceled) */
  report: ReportedCommandStatus | null;
  result?: string | null;
  error?: string | null;
}

export interface StoredConfig {
  key: string;
  /** JSON text of the value in effect; null when no version was ever applied */
  value: string | null;
  /** newest version handled (applied or rejected) */
  version: number;
  appliedVersion: number | null;
  reportStatus: 'applied' | 'rejected' | null;
  reportError: string | null;
  reportAtMs: number | null;
  reportConfirmed: boolean;
}

export interface ConfigOutcome {
  key: string;
  version: number;
  status: 'applied' | 'rejected';
  /** JSON text of the value now in effect (when applied) */
  value?: string;
  error?: string;
  atMs: number;
}

export interface DownstreamStore {
  /** Inserts the command unless its id is known; false (and nothing written) when it is. */
  insertCommand(command: NewCommand): Promise<boolean>;
  getCommand(commandId: string): Promise<StoredCommand | null>;
  /** Applies the transition only from `from` (guarded in the UPDATE); false when the row was elsewhere. */
  transitionCommand(commandId: string, transition: CommandTransition): Promise<boolean>;
  /** Marks the report confirmed if it is still the latest one of the command. */
  confirmCommandReport(commandId: string, report: ReportedCommandStatus): Promise<boolean>;
  /** G6 after a crash: every `executing` command becomes `failed` with `reason` (and a report); their ids. */
  failInterruptedCommands(atMs: number, reason: string): Promise<string[]>;
  unconfirmedCommandReports(): Promise<StoredCommand[]>;
  /** Commands in one state, oldest first (at start: delivered ones not started before a restart). */
  listCommands(status: LocalCommandStatus): Promise<StoredCommand[]>;
  getConfig(key: string): Promise<StoredConfig | null>;
  listConfigs(): Promise<StoredConfig[]>;
  /** Records what was done with one version (value replaced only when applied), with its report. */
  recordConfigOutcome(outcome: ConfigOutcome): Promise<void>;
  confirmConfigReport(key: string, version: number): Promise<boolean>;
  deleteConfig(key: string): Promise<boolean>;
  unconfirmedConfigReports(): Promise<StoredConfig[]>;
  countUnconfirmedReports(): Promise<{ commands: number; config: number }>;
}

/** The operations a worker-backed store forwards (every method of DownstreamStore). */
export const DOWNSTREAM_OPERATIONS = [
  'insertCommand',
  'getCommand',
  'transitionCommand',
  'confirmCommandReport',
  'failInterruptedCommands',
  'unconfirmedCommandReports',
  'listCommands',
  'getConfig',
  'listConfigs',
  'recordConfigOutcome',
  'confirmConfigReport',
  'deleteConfig',
  'unconfirmedConfigReports',
  'countUnconfirmedReports',
] as const satisfies readonly (keyof DownstreamStore)[];

export type DownstreamOperation = (typeof DOWNSTREAM_OPERATIONS)[number];

const COMMAND_COLUMNS = `id, command_type, payload, created_at, expires_at, status, received_at, started_at, executed_at,
  result, error, report_status, report_at, report_confirmed`;

const CONFIG_COLUMNS = `config_key, config_value, version, applied_version, report_status, report_error, report_at,
  report_confirmed`;

const num = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
const text = (value: unknown): string | null =>
  value === null || value === undefined ? null : typeof value === 'string' ? value : JSON.stringify(value);

function commandFromRow(row: Record<string, unknown>): StoredCommand {
  return {
    commandId: String(row['id']),
    type: String(row['command_type']),
    payload: String(row['payload']),
    createdAt: text(row['created_at']),
    expiresAtMs: num(row['expires_at']),
    status: String(row['status']) as LocalCommandStatus,
    receivedAtMs: Number(row['received_at']),
    startedAtMs: num(row['started_at']),
    finishedAtMs: num(row['executed_at']),
    result: text(row['result']),
    error: text(row['error']),
    reportStatus: text(row['report_status']) as ReportedCommandStatus | null,
    reportAtMs: num(row['report_at']),
    reportConfirmed: Number(row['report_confirmed']) === 1,
  };
}

function configFromRow(row: Record<string, unknown>): StoredConfig {
  const value = text(row['config_value']);
  return {
    key: String(row['config_key']),
    // '' marks "no value applied yet" (config_value is NOT NULL in the original schema)
    value: value === '' ? null : value,
    version: Number(row['version']),
    appliedVersion: num(row['applied_version']),
    reportStatus: text(row['report_status']) as 'applied' | 'rejected' | null,
    reportError: text(row['report_error']),
    reportAtMs: num(row['report_at']),
    reportConfirmed: Number(row['report_confirmed']) === 1,
  };
}

const TERMINAL_LOCAL = new Set<LocalCommandStatus>(['executed', 'failed', 'rejected', 'expired', 'canceled']);

export class SqlDownstreamStore implements DownstreamStore {
  readonly #db: EdgeDatabase;

  constructor(db: EdgeDatabase) {
    this.#db = db;
  }

  insertCommand(command: NewCommand): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `INSERT INTO command_queue (id, command_type, payload, created_at, expires_at, status, received_at, executed_at,
            error, report_status, report_at, report_confirmed)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
        args: [
          command.commandId,
          command.type,
          command.payload,
          command.createdAt,
          command.expiresAtMs,
          command.status,
          command.receivedAtMs,
          TERMINAL_LOCAL.has(command.status) ? command.receivedAtMs : null,
          command.error,
          command.report,
          command.report === null ? null : command.receivedAtMs,
          command.report === null ? 1 : 0,
        ],
      });
      return result.rowsAffected === 1;
    });
  }

  getCommand(commandId: string): Promise<StoredCommand | null> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `SELECT ${COMMAND_COLUMNS} FROM command_queue WHERE id = ?`,
        args: [commandId],
      });
      const row = result.rows[0];
      return row ? commandFromRow(row as unknown as Record<string, unknown>) : null;
    });
  }

  transitionCommand(commandId: string, transition: CommandTransition): Promise<boolean> {
    if (transition.from.length === 0) return Promise.resolve(false);
    const sources = transition.from.map(() => '?').join(', ');
    const terminal = TERMINAL_LOCAL.has(transition.to);
    return this.#db.exclusive(async (client) => {
      // G6: forward only, in the statement itself
      const result = await client.execute({
        sql: `UPDATE command_queue SET status = ?,
            started_at = CASE WHEN ? = 'executing' THEN ? ELSE started_at END,
            executed_at = CASE WHEN ? THEN ? ELSE executed_at END,
            result = coalesce(?, result), error = coalesce(?, error),
            report_status = coalesce(?, report_status),
            report_at = CASE WHEN ? IS NULL THEN report_at ELSE ? END,
            report_confirmed = CASE WHEN ? IS NULL THEN report_confirmed ELSE 0 END
          WHERE id = ? AND status IN (${sources})`,
        args: [
          transition.to,
          transition.to,
          transition.atMs,
          terminal ? 1 : 0,
          transition.atMs,
          transition.result ?? null,
          transition.error ?? null,
          transition.report,
          transition.report,
          transition.atMs,
          transition.report,
          commandId,
          ...transition.from,
        ],
      });
      return result.rowsAffected === 1;
    });
  }

  confirmCommandReport(commandId: string, report: ReportedCommandStatus): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `UPDATE command_queue SET report_confirmed = 1 WHERE id = ? AND report_status = ? AND report_confirmed = 0`,
        args: [commandId, report],
      });
      return result.rowsAffected === 1;
    });
  }

  failInterruptedCommands(atMs: number, reason: string): Promise<string[]> {
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        const result = await transaction.execute({
          sql: `UPDATE command_queue SET status = 'failed', executed_at = ?, error = ?, report_status = 'failed',
              report_at = ?, report_confirmed = 0
            WHERE status = 'executing' RETURNING id`,
          args: [atMs, reason, atMs],
        });
        return result.rows.map((row) => text(row['id']) ?? '');
      }),
    );
  }

  unconfirmedCommandReports(): Promise<StoredCommand[]> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(
        `SELECT ${COMMAND_COLUMNS} FROM command_queue INDEXED BY idx_command_reports WHERE report_confirmed = 0 ORDER BY report_at`,
      );
      return result.rows.map((row) => commandFromRow(row as unknown as Record<string, unknown>));
    });
  }

  listCommands(status: LocalCommandStatus): Promise<StoredCommand[]> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `SELECT ${COMMAND_COLUMNS} FROM command_queue INDEXED BY idx_command_status WHERE status = ? ORDER BY received_at`,
        args: [status],
      });
      return result.rows.map((row) => commandFromRow(row as unknown as Record<string, unknown>));
    });
  }

  getConfig(key: string): Promise<StoredConfig | null> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `SELECT ${CONFIG_COLUMNS} FROM device_config WHERE config_key = ?`,
        args: [key],
      });
      const row = result.rows[0];
      return row ? configFromRow(row as unknown as Record<string, unknown>) : null;
    });
  }

  listConfigs(): Promise<StoredConfig[]> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(`SELECT ${CONFIG_COLUMNS} FROM device_config ORDER BY config_key`);
      return result.rows.map((row) => configFromRow(row as unknown as Record<string, unknown>));
    });
  }

  recordConfigOutcome(outcome: ConfigOutcome): Promise<void> {
    const applied = outcome.status === 'applied';
    return this.#db.exclusive(async (client) => {
      // the version only moves up (MAX), also if two outcomes raced
      await client.execute({
        sql: `INSERT INTO device_config (id, config_key, config_value, version, applied_at, received_at, applied_version,
            report_status, report_error, report_at, report_confirmed)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
          ON CONFLICT(config_key) DO UPDATE SET
            config_value = CASE WHEN excluded.applied_version IS NOT NULL THEN excluded.config_value ELSE config_value END,
            applied_version = coalesce(excluded.applied_version, applied_version),
            applied_at = coalesce(excluded.applied_at, applied_at),
            version = excluded.version, received_at = excluded.received_at,
            report_status = excluded.report_status, report_error = excluded.report_error,
            report_at = excluded.report_at, report_confirmed = 0
          WHERE excluded.version > device_config.version`,
        args: [
          newId(),
          outcome.key,
          applied ? (outcome.value ?? 'null') : '',
          outcome.version,
          applied ? outcome.atMs : null,
          outcome.atMs,
          applied ? outcome.version : null,
          outcome.status,
          outcome.error ?? null,
          outcome.atMs,
        ],
      });
    });
  }

  confirmConfigReport(key: string, version: number): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `UPDATE device_config SET report_confirmed = 1 WHERE config_key = ? AND version <= ? AND report_confirmed = 0`,
        args: [key, version],
      });
      return result.rowsAffected === 1;
    });
  }

  deleteConfig(key: string): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({ sql: `DELETE FROM device_config WHERE config_key = ?`, args: [key] });
      return result.rowsAffected === 1;
    });
  }

  unconfirmedConfigReports(): Promise<StoredConfig[]> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(
        `SELECT ${CONFIG_COLUMNS} FROM device_config WHERE report_confirmed = 0 ORDER BY report_at`,
      );
      return result.rows.map((row) => configFromRow(row as unknown as Record<string, unknown>));
    });
  }

  countUnconfirmedReports(): Promise<{ commands: number; config: number }> {
    return this.#db.exclusive(async (client) => {
      const commands = await client.execute(
        `SELECT count(*) AS n FROM command_queue INDEXED BY idx_command_reports WHERE report_confirmed = 0`,
      );
      const config = await client.execute(`SELECT count(*) AS n FROM device_config WHERE report_confirmed = 0`);
      return { commands: Number(commands.rows[0]?.['n'] ?? 0), config: Number(config.rows[0]?.['n'] ?? 0) };
    });
  }
}
