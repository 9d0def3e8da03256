/**
 * G6: heals the broker's retained store from the database (the truth), at start, every
 * RECONCILE_INTERVAL_MS, and soon after the bridge reconnects to a broker that lost its session
 * (a restart without persistence, a flushed Redis: the retained messages went with it).
 *
 *  1. Snapshot: subscribe (as the service role, one filter per SUBSCRIBE, see
 *     bridge/mqtt/bridge-mqtt-client.ts) to devices/+/commands/+ and devices/+/config/+ and
 *     collect the retained messages until none arrived for `quietMs` (capped at `maxSnapshotMs`),
 *     then unsubscribe.
 *  2. Truth, read AFTER the snapshot: every live, unexpired command and every current config key.
 *     A retained message is published only after its row committed, so anything in the snapshot
 *     is in this read; a topic the read does not have live was made terminal or deleted.
 *  3. Diff (reconcile-plan.ts) and repair through retained-publisher.ts, which never puts an older
 *     state over a newer one; paced at RECONCILE_PUBLISH_RATE publishes per second, so healing
 *     10,000 devices does not flood the broker. In steady state the diff is empty.
 * Bounded: reads are paged (1,000 rows a query); memory is one entry per retained topic.
 * A snapshot that ends early (the broker's stream of retained messages paused longer than
 * `quietMs`, e.g. a slow Redis) errs on the safe side: a topic it missed is published again
 * (the same payload), and a stale one it missed is cleared by the next run.
 */
import type { Logger } from '../../common/logger.js';
import { COMMAND_STATUS_RANK, LIVE_COMMAND_STATUSES } from '../../schemas/command-lifecycle.js';
import { topics } from '../../schemas/topics.js';
import type { Database } from '../db/connection.js';
import { commandMessage, commandOrder, commandPayload } from './command-rules.js';
import { configDesired, configOrder, configPayload } from './config-rules.js';
import { planReconcile, type DesiredTopic } from './reconcile-plan.js';
import type { RetainedPublisher } from './retained-publisher.js';
import { COMMAND_COLUMNS, CONFIG_COLUMNS, commandView, configState, type CommandRow, type ConfigRow } from './views.js';

export const RETAINED_COMMANDS_FILTER = 'devices/+/commands/+';
export const RETAINED_CONFIG_FILTER = 'devices/+/config/+';

export interface SnapshotSubscriber {
  subscribe(filter: string): Promise<void>;
  unsubscribe(filter: string): Promise<void>;
}

export interface ReconcilerOptions {
  db: Database;
  publisher: RetainedPublisher;
  subscriber: SnapshotSubscriber;
  logger: Logger;
  /** retained publishes per second */
  publishRate: number;
  now?: () => number;
  /** the snapshot ends after this long without a retained message; default 1000 ms */
  quietMs?: number;
  /** and at the latest after this long; default 60 s */
  maxSnapshotMs?: number;
  onRepair?: (kind: 'command' | 'config', action: 'publish' | 'clear') => void;
}

export interface ReconcileResult {
  retained: number;
  desired: number;
  published: number;
  cleared: number;
}

export class Reconciler {
  readonly #options: ReconcilerOptions;
  #collecting: Map<string, string> | null = null;
  #lastSeenMs = 0;
  #closed = false;
  #signalClosed: () => void = () => undefined;
  readonly #whenClosed = new Promise<void>((resolve) => {
    this.#signalClosed = resolve;
  });

  constructor(options: ReconcilerOptions) {
    this.#options = options;
  }

  /** A retained command/config message the bridge received (ReportReceiver's onRetainedSeen). */
  seen(topic: string, payload: string): void {
    if (this.#collecting === null) return;
    this.#collecting.set(topic, payload);
    this.#lastSeenMs = Date.now();
  }

  /** Ends a run in progress early (a SUBACK or PUBACK a disconnected broker will not send). */
  close(): void {
    this.#closed = true;
    this.#signalClosed();
  }

  async run(): Promise<ReconcileResult> {
    const retained = await this.#snapshot();
    const desired = await this.#truth();
    // a command's clear ranks with the terminal states (a command never becomes live again); a
    // config clear takes the lowest order, so it never hides a version published since
    const actions = planReconcile(retained, desired, (kind) =>
      kind === 'command' ? [COMMAND_STATUS_RANK.executed] : [0, 0, 0],
    );
    const { publisher, publishRate } = this.#options;
    const startedMs = Date.now();
    let published = 0;
    let cleared = 0;
    const window: Array<Promise<void>> = [];
    for (const [index, action] of actions.entries()) {
      if (this.#closed) break;
      // pacing, not synchronisation: publish number i no earlier than i / rate seconds after the first
      const dueMs = startedMs + (index * 1000) / publishRate - Date.now();
      if (dueMs > 0) await new Promise((resolve) => setTimeout(resolve, dueMs));
      window.push(publisher.publish(action.topic, action.payload, action.order));
      if (window.length >= 100) await Promise.all(window.splice(0));
      if (action.payload === '') cleared += 1;
      else published += 1;
      this.#options.onRepair?.(action.kind, action.payload === '' ? 'clear' : 'publish');
    }
    await Promise.all(window);
    const result = { retained: retained.size, desired: desired.size, published, cleared };
    if (published + cleared > 0) this.#options.logger.info(result, 'reconciled the retained command and config topics');
    return result;
  }

  async #snapshot(): Promise<Map<string, string>> {
    const { subscriber } = this.#options;
    const quietMs = this.#options.quietMs ?? 1000;
    const maxMs = this.#options.maxSnapshotMs ?? 60_000;
    const collected = new Map<string, string>();
    this.#collecting = collected;
    const startedMs = Date.now();
    this.#lastSeenMs = startedMs;
    try {
      await this.#unlessClosed(subscriber.subscribe(RETAINED_COMMANDS_FILTER));
      await this.#unlessClosed(subscriber.subscribe(RETAINED_CONFIG_FILTER));
      this.#lastSeenMs = Math.max(this.#lastSeenMs, Date.now());
      // the broker streams retained messages after the SUBACK; the end is a quiet period
      for (;;) {
        const nowMs = Date.now();
        const quietFor = nowMs - this.#lastSeenMs;
        if (this.#closed || quietFor >= quietMs || nowMs - startedMs >= maxMs) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(quietMs - quietFor, 250)));
      }
    } finally {
      this.#collecting = null;
      await this.#unlessClosed(
        Promise.allSettled([
          subscriber.unsubscribe(RETAINED_COMMANDS_FILTER),
          subscriber.unsubscribe(RETAINED_CONFIG_FILTER),
        ]),
      );
    }
    if (this.#closed) throw new Error('reconciliation stopped: the bridge is closing');
    return collected;
  }

  async #unlessClosed(operation: Promise<unknown>): Promise<void> {
    await Promise.race([operation, this.#whenClosed]);
  }

  async #truth(): Promise<Map<string, DesiredTopic>> {
    const { db } = this.#options;
    const now = new Date((this.#options.now ?? Date.now)());
    const desired = new Map<string, DesiredTopic>();
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const rows = await db.any<CommandRow>(
        `SELECT ${COMMAND_COLUMNS} FROM commands
         WHERE status IN ($1:csv) AND (expires_at IS NULL OR expires_at > $2) AND command_id > $3
         ORDER BY command_id LIMIT 1000`,
        [LIVE_COMMAND_STATUSES, now, after],
      );
      for (const row of rows) {
        const message = commandMessage(commandView(row));
        if (message === null) continue;
        desired.set(topics.command(row.device_id, row.command_id), {
          payload: commandPayload(message),
          order: commandOrder(message),
        });
      }
      const last = rows[rows.length - 1];
      if (rows.length < 1000 || last === undefined) break;
      after = last.command_id;
    }
    let afterDevice = '00000000-0000-0000-0000-000000000000';
    let afterKey = '';
    for (;;) {
      const rows = await db.any<ConfigRow>(
        `SELECT ${CONFIG_COLUMNS} FROM device_configs
         WHERE deleted_at IS NULL AND (device_id, config_key) > ($1::uuid, $2)
         ORDER BY device_id, config_key LIMIT 1000`,
        [afterDevice, afterKey],
      );
      for (const row of rows) {
        const state = configState(row);
        desired.set(topics.config(state.deviceId, state.key), {
          payload: configPayload(configDesired(state)),
          order: configOrder(state),
        });
      }
      const last = rows[rows.length - 1];
      if (rows.length < 1000 || last === undefined) break;
      afterDevice = last.device_id;
      afterKey = last.config_key;
    }
    return desired;
  }
}
