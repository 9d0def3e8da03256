/**
 * G6: device config, the service layer the REST API and the MQTT report handler call.
 * `device_configs (device_id, config_key)` is the truth: the desired value and its version
 * (incremented in the same SERIALIZABLE transaction as the write; an optional expected version
 * refuses a stale write with a conflict, HTTP 409), next to the newest version the device
 * reported. A deleted key is a tombstone (deleted_at, version kept) so that its retained topic is
 * cleared and reconciled, and a key set again continues from its old version (a device applies
 * only versions newer than the one it has).
 *
 * The retained devices/{id}/config/{key} message {key, value, version, reportedVersion?} is
 * published right after each commit, a report included (that confirms the report to the edge).
 * A report for an older version never overwrites a newer one: the UPDATE's guard is
 * `reported_version IS NULL OR reported_version < $version` (config-rules.ts decides the same first).
 */
import { randomUUID } from 'node:crypto';
import type { ConfigReported } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import type { Database, Task } from '../db/connection.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import { reportTime } from './command-rules.js';
import {
  checkConfigKey,
  checkConfigWrite,
  configDesired,
  configOrder,
  configPayload,
  planConfigReport,
} from './config-rules.js';
import { checkDeviceId, checkLimit, decodeCursor, encodeCursor, isUuid } from './cursor.js';
import { DownstreamError } from './errors.js';
import type { RetainedPublisher } from './retained-publisher.js';
import { CONFIG_COLUMNS, configState, configView, type ConfigRow, type ConfigState, type ConfigView } from './views.js';

export type { ConfigView } from './views.js';
export type { ConfigReported } from '../../schemas/messages.js';

export interface ConfigServiceOptions {
  db: Database;
  publisher: RetainedPublisher;
  retry?: TransactionRetryOptions;
  now?: () => number;
}

export interface ConfigWriteOptions {
  /** the version the caller last saw; 0 for a key that does not exist (or was deleted) */
  expectedVersion?: number;
}

/** Publishes the retained truth of a key (its desired message, or the clear when deleted). */
export function publishConfigTruth(publisher: RetainedPublisher, state: ConfigState): Promise<void> {
  return publisher.publish(
    topics.config(state.deviceId, state.key),
    configPayload(configDesired(state)),
    configOrder(state),
  );
}

/** The SQL of "the current version is not applied": never reported, an older version, or rejected. */
export const LAGGING_CONDITION =
  "deleted_at IS NULL AND (reported_version IS NULL OR reported_version < version OR reported_status <> 'applied')";

export class ConfigService {
  readonly #db: Database;
  readonly #publisher: RetainedPublisher;
  readonly #retry: TransactionRetryOptions;
  readonly #now: () => number;

  constructor(options: ConfigServiceOptions) {
    this.#db = options.db;
    this.#publisher = options.publisher;
    this.#retry = options.retry ?? {};
    this.#now = options.now ?? Date.now;
  }

  async set(deviceId: string, key: string, value: unknown, opts: ConfigWriteOptions = {}): Promise<ConfigView> {
    checkDeviceId(deviceId);
    const checked = checkConfigWrite(key, value);
    if (!checked.ok) throw new DownstreamError('invalid', checked.reason);
    checkExpectedVersion(opts.expectedVersion);
    const expected = opts.expectedVersion;
    const row = await runSerializable(
      this.#db,
      'config-set',
      async (t) => {
        // One statement, no read first: under SERIALIZABLE a SELECT before the write took
        // predicate locks on the (device_id, config_key) index page and on the device row, so
        // concurrent sets of other devices' keys (and presence updates of the device) failed
        // with 40001 until the retries ran out: 2 of 100 PUTs answered 500 at 16 at a time
        // (scripts/bench-downstream.ts). A deleted key (tombstone) counts as version 0 and
        // continues above its old version. The device must exist: the foreign key says so.
        const written =
          expected === undefined || expected === 0
            ? await t.oneOrNone<ConfigRow>(
                `INSERT INTO device_configs (config_id, device_id, config_key, config_value, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4:json, 1, now(), now())
                 ON CONFLICT (device_id, config_key) DO UPDATE
                   SET config_value = EXCLUDED.config_value, version = device_configs.version + 1,
                       deleted_at = NULL, updated_at = now()
                   WHERE $5 OR device_configs.deleted_at IS NOT NULL
                 RETURNING ${CONFIG_COLUMNS}`,
                [randomUUID(), deviceId, key, value, expected === undefined],
              )
            : await t.oneOrNone<ConfigRow>(
                `UPDATE device_configs
                    SET config_value = $3:json, version = version + 1, updated_at = now()
                  WHERE device_id = $1 AND config_key = $2 AND deleted_at IS NULL AND version = $4
                 RETURNING ${CONFIG_COLUMNS}`,
                [deviceId, key, value, expected],
              );
        if (written !== null) return written;
        // only a stale expected version gets here: read what it is, for the 409's details
        const current = await selectConfig(t, deviceId, key);
        const currentVersion = current === null || current.deleted_at !== null ? 0 : Number(current.version);
        throw new DownstreamError(
          'conflict',
          `config '${key}' is at version ${currentVersion}, not the expected ${String(expected)}`,
          { version: currentVersion },
        );
      },
      this.#retry,
    ).catch((error: unknown) => {
      if ((error as { code?: unknown } | null)?.code === '23503') {
        throw new DownstreamError('device-not-found', `no device ${deviceId}`);
      }
      throw error;
    });
    const state = configState(row);
    void publishConfigTruth(this.#publisher, state);
    return configView(state);
  }

  /** Deletes a key (its retained topic is cleared); not-found when it is not set. */
  async delete(deviceId: string, key: string, opts: ConfigWriteOptions = {}): Promise<void> {
    checkDeviceId(deviceId);
    const keyCheck = checkConfigKey(key);
    if (!keyCheck.ok) throw new DownstreamError('invalid', keyCheck.reason);
    checkExpectedVersion(opts.expectedVersion);
    const row = await runSerializable(
      this.#db,
      'config-delete',
      async (t) => {
        const current = await selectConfig(t, deviceId, key);
        if (current === null || current.deleted_at !== null) {
          throw new DownstreamError('not-found', `config '${key}' is not set for device ${deviceId}`);
        }
        if (opts.expectedVersion !== undefined && opts.expectedVersion !== Number(current.version)) {
          throw new DownstreamError(
            'conflict',
            `config '${key}' is at version ${current.version}, not the expected ${opts.expectedVersion}`,
            { version: Number(current.version) },
          );
        }
        return t.one<ConfigRow>(
          `UPDATE device_configs SET deleted_at = now(), updated_at = now()
           WHERE device_id = $1 AND config_key = $2 RETURNING ${CONFIG_COLUMNS}`,
          [deviceId, key],
        );
      },
      this.#retry,
    );
    void publishConfigTruth(this.#publisher, configState(row));
  }

  async get(deviceId: string, key: string): Promise<ConfigView | null> {
    if (!isUuid(deviceId)) return null;
    const row = await selectConfig(this.#db, deviceId, key);
    return row === null || row.deleted_at !== null ? null : configView(configState(row));
  }

  /** The device's current keys, by key. */
  async list(deviceId: string): Promise<ConfigView[]> {
    checkDeviceId(deviceId);
    const rows = await this.#db.any<ConfigRow>(
      `SELECT ${CONFIG_COLUMNS} FROM device_configs WHERE device_id = $1 AND deleted_at IS NULL ORDER BY config_key`,
      [deviceId],
    );
    return rows.map((row) => configView(configState(row)));
  }

  /**
   * Keys whose current version the device has not applied (never reported, an older version
   * reported, or the current one rejected), by device and key; `key` narrows it to one key:
   * "which devices have not applied the current version of K".
   */
  async lagging(filter: {
    key?: string;
    limit: number;
    after?: string;
  }): Promise<{ items: ConfigView[]; next: string | null }> {
    checkLimit(filter.limit);
    const values: unknown[] = [];
    const where = [LAGGING_CONDITION];
    if (filter.key !== undefined) {
      values.push(filter.key);
      where.push(`config_key = $${values.length}`);
    }
    if (filter.after !== undefined) {
      const [deviceId = '', key = ''] = decodeCursor(filter.after, 2);
      if (!isUuid(deviceId)) throw new DownstreamError('invalid', 'the cursor is not one this API handed out');
      values.push(deviceId, key);
      where.push(`(device_id, config_key) > ($${values.length - 1}::uuid, $${values.length})`);
    }
    values.push(filter.limit + 1);
    const rows = await this.#db.any<ConfigRow>(
      `SELECT ${CONFIG_COLUMNS} FROM device_configs WHERE ${where.join(' AND ')}
       ORDER BY device_id, config_key LIMIT $${values.length}`,
      values,
    );
    const items = rows.slice(0, filter.limit).map((row) => configView(configState(row)));
    const last = items[items.length - 1];
    return { items, next: rows.length > filter.limit && last ? encodeCursor([last.deviceId, last.key]) : null };
  }

  /**
   * Records a device's report (devices/{id}/config/reported). `applied` is false for a report of
   * a version not newer than the recorded one (changes nothing). not-found for a key that is not
   * set; invalid for a version newer than the desired one. The desired message (with the
   * reportedVersion now recorded, or the clear) is published again either way.
   */
  async report(
    deviceId: string,
    report: ConfigReported,
  ): Promise<{ applied: boolean; ignored?: 'duplicate' | 'older' }> {
    if (!isUuid(deviceId))
      throw new DownstreamError('not-found', `config '${report.key}' is not set for device ${deviceId}`);
    const at = report.at === undefined ? new Date(this.#now()) : reportTime(report.at, this.#now());
    const outcome = await runSerializable(
      this.#db,
      'config-report',
      async (t) => {
        const current = await selectConfig(t, deviceId, report.key);
        const state = current === null ? null : configState(current);
        const plan = planConfigReport(state, report);
        if (plan.kind === 'refuse') return { applied: false, state, refusal: plan, ignored: undefined };
        if (plan.kind === 'ignore') return { applied: false, state, refusal: null, ignored: plan.reason };
        const updated = await t.oneOrNone<ConfigRow>(
          `UPDATE device_configs SET reported_version = $3, reported_status = $4, reported_error = $5, reported_at = $6,
             updated_at = now()
           WHERE device_id = $1 AND config_key = $2 AND (reported_version IS NULL OR reported_version < $3)
           RETURNING ${CONFIG_COLUMNS}`,
          [deviceId, report.key, report.version, report.status, report.error ?? null, at],
        );
        return updated === null
          ? { applied: false, state, refusal: null, ignored: 'duplicate' as const }
          : { applied: true, state: configState(updated), refusal: null, ignored: undefined };
      },
      this.#retry,
    );
    if (outcome.state !== null) void publishConfigTruth(this.#publisher, outcome.state);
    else void this.#publisher.publish(topics.config(deviceId, report.key), '', [0, 0, 0]);
    if (outcome.refusal !== null) throw new DownstreamError(outcome.refusal.code, outcome.refusal.reason);
    return outcome.ignored === undefined ? { applied: outcome.applied } : { applied: false, ignored: outcome.ignored };
  }
}

function checkExpectedVersion(expected: number | undefined): void {
  if (expected !== undefined && (!Number.isInteger(expected) || expected < 0)) {
    throw new DownstreamError('invalid', `expectedVersion must be an integer of at least 0, got ${expected}`);
  }
}

function selectConfig(t: Task | Database, deviceId: string, key: string): Promise<ConfigRow | null> {
  return t.oneOrNone<ConfigRow>(
    `SELECT ${CONFIG_COLUMNS} FROM device_configs WHERE device_id = $1 AND config_key = $2`,
    [deviceId, key],
  );
}
