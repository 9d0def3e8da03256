/**
 * G6: picks up commands and config written by another bridge or REST API instance, without
 * LISTEN/NOTIFY (which CockroachDB does not have): every DOWNSTREAM_POLL_MS it reads the rows of
 * `commands` and `device_configs` whose updated_at (the database's time of the write, indexed
 * idx_commands_updated_at / idx_device_configs_updated_at) is later than its watermark and
 * publishes their retained truth (retained-publisher.ts), unless this bridge already published
 * exactly that payload (its own writes, published at once after their commits).
 *
 * now() is the transaction's start time, so a transaction can commit a row whose updated_at is
 * older than rows already seen: the watermark trails the newest updated_at seen by `overlapMs`
 * (default 5 s) and the database's clock by as much, and a write committed later than that is
 * repaired by the reconciler (reconciler.ts). Several bridges may poll at once: each publishes the
 * same truth, and retained-publisher.ts never publishes an older state after a newer one.
 */
import type { Database } from '../db/connection.js';
import { commandMessage, commandPayload } from './command-rules.js';
import { publishCommandTruth } from './command-service.js';
import { configDesired, configPayload } from './config-rules.js';
import { publishConfigTruth } from './config-service.js';
import type { RetainedPublisher } from './retained-publisher.js';
import { COMMAND_COLUMNS, CONFIG_COLUMNS, commandView, configState, type CommandRow, type ConfigRow } from './views.js';
import { topics } from '../../schemas/topics.js';

export interface ChangePollerOptions {
  db: Database;
  publisher: RetainedPublisher;
  /** how far the watermark trails; default 5000 ms */
  overlapMs?: number;
  /** rows per query; default 500 */
  pageSize?: number;
}

export class ChangePoller {
  readonly #options: ChangePollerOptions;
  readonly #overlapMs: number;
  readonly #pageSize: number;
  #commandsSince: Date | undefined;
  #configsSince: Date | undefined;

  constructor(options: ChangePollerOptions) {
    this.#options = options;
    this.#overlapMs = options.overlapMs ?? 5000;
    this.#pageSize = options.pageSize ?? 500;
  }

  /** One poll: publishes what changed since the watermark. Returns the number of topics published. */
  async poll(): Promise<number> {
    const { db, publisher } = this.#options;
    const dbNow = (await db.one<{ now: Date }>('SELECT now() AS now')).now;
    const floor = new Date(dbNow.getTime() - this.#overlapMs);
    this.#commandsSince = later(this.#commandsSince ?? floor, floor);
    this.#configsSince = later(this.#configsSince ?? floor, floor);
    let published = 0;
    const publishing: Array<Promise<void>> = [];

    for (let page = 0; page < 20; page += 1) {
      const rows = await db.any<CommandRow>(
        `SELECT ${COMMAND_COLUMNS} FROM commands WHERE updated_at > $1 ORDER BY updated_at LIMIT $2`,
        [this.#commandsSince, this.#pageSize],
      );
      for (const row of rows) {
        const view = commandView(row);
        const topic = topics.command(view.deviceId, view.commandId);
        if (publisher.lastPayload(topic) === commandPayload(commandMessage(view))) continue;
        publishing.push(publishCommandTruth(publisher, view));
        published += 1;
      }
      const last = rows[rows.length - 1];
      if (rows.length < this.#pageSize || last === undefined) break;
      this.#commandsSince = later(this.#commandsSince, new Date(last.updated_at.getTime() - 1));
    }
    for (let page = 0; page < 20; page += 1) {
      const rows = await db.any<ConfigRow>(
        `SELECT ${CONFIG_COLUMNS} FROM device_configs WHERE updated_at > $1 ORDER BY updated_at LIMIT $2`,
        [this.#configsSince, this.#pageSize],
      );
      for (const row of rows) {
        const state = configState(row);
        const topic = topics.config(state.deviceId, state.key);
        if (publisher.lastPayload(topic) === configPayload(configDesired(state))) continue;
        publishing.push(publishConfigTruth(publisher, state));
        published += 1;
      }
      const last = rows[rows.length - 1];
      if (rows.length < this.#pageSize || last === undefined) break;
      this.#configsSince = later(this.#configsSince, new Date(last.updated_at.getTime() - 1));
    }
    await Promise.all(publishing);
    return published;
  }
}

function later(a: Date, b: Date): Date {
  return a.getTime() >= b.getTime() ? a : b;
}
