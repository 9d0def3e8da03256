/**
 * G8 on the edge: keeps the libSQL database within its capacity and heals without an operator.
 *
 * The decisions are storage-budget.ts's (pure); this file wires them to the store, the group
 * commit's admission gate, the metrics and the log. A check samples the store (PRAGMAs, WAL size,
 * statfs, all on the store worker) and then, while it is above its mark: prunes synced readings
 * (oldest first), then applies the overflow policy (drop the oldest pending
 * readings, or close the gate so sensors' PUBACKs wait), chunk by chunk, re-sampling after each.
 *
 * Checks run after commits (coalesced: one at a time, one more if asked meanwhile) and on a timer,
 * so a store closed by a full disk opens again on its own: the uplink drains (claims and acks fit
 * in the reserve), acks turn readings synced, the next check prunes them and opens the gate.
 * A commit that fails with SQLITE_FULL closes the gate at once, for at least one check interval.
 * Every condition is logged once when it starts and then once per interval with counts.
 */
import type { Logger } from '../common/logger.js';
import { rateLimitedLog, type RateLimitedLog } from '../common/rate-limited-log.js';
import type { Admission } from './ingest/group-commit.js';
import type { EdgeMetrics } from './metrics.js';
import { assessStorage, nextStorageStep, type OverflowPolicy, type StorageAssessment } from './store/storage-budget.js';
import type { TelemetryStore } from './store/telemetry-store.js';

export interface StorageGuardOptions {
  store: TelemetryStore;
  maxDbBytes: number;
  policy: OverflowPolicy;
  logger: Logger;
  metrics?: EdgeMetrics | undefined;
  /** timer between checks; default 500 ms */
  checkIntervalMs?: number;
  /** rows pruned or dropped per step; default 2000 */
  chunkRows?: number;
  /** readings waiting for space, for the metric */
  waitingReadings?: () => number;
  now?: () => number;
}

/** SQLite's "database or disk is full" (and the max_page_count backstop), as @libsql/client 0.18 reports it */
export function isStorageFullError(error: unknown): boolean {
  const { code, rawCode } = (error ?? {}) as { code?: unknown; rawCode?: unknown };
  return code === 'SQLITE_FULL' || rawCode === 13 || (error instanceof Error && /disk is full/i.test(error.message));
}

/** most steps of one check before it yields to other store work (and schedules the next check) */
const MAX_STEPS_PER_CHECK = 20;

export class StorageGuard implements Admission {
  readonly #options: StorageGuardOptions;
  readonly #log: Logger;
  readonly #events: RateLimitedLog<Record<string, unknown>>;
  readonly #timer: NodeJS.Timeout;
  readonly #chunk: number;
  readonly #now: () => number;
  #open = true;
  #closedUntilMs = 0;
  #openWaiters: (() => void)[] = [];
  #checking: Promise<void> | null = null;
  #checkAgain = false;
  #closed = false;
  #droppedTotal = 0;
  #last: StorageAssessment | null = null;

  private constructor(options: StorageGuardOptions, droppedTotal: number) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'storage-guard' });
    this.#chunk = options.chunkRows ?? 2000;
    this.#now = options.now ?? Date.now;
    this.#droppedTotal = droppedTotal;
    this.#events = rateLimitedLog(this.#log, {
      intervalMs: 30_000,
      level: 'warn',
      message: ({ key, count, sample }) =>
        `${describe(key, sample)}${count > 1 ? ` (${count} times since the last line)` : ''}`,
    });
    this.#timer = setInterval(() => void this.requestCheck(), options.checkIntervalMs ?? 500);
    this.#timer.unref();
  }

  /** Reads the counters, checks once (so the gate is right before the first reading), then keeps checking. */
  static async start(options: StorageGuardOptions): Promise<StorageGuard> {
    const counters = await options.store.readCounters();
    const guard = new StorageGuard(options, counters.droppedPendingReadings);
    await guard.requestCheck();
    return guard;
  }

  get open(): boolean {
    return this.#open;
  }

  whenOpen(): Promise<void> {
    if (this.#open) return Promise.resolve();
    return new Promise((resolve) => this.#openWaiters.push(resolve));
  }

  /** Pending readings dropped by drop-oldest since the database was created (sent upstream as droppedCount). */
  get droppedTotal(): number {
    return this.#droppedTotal;
  }

  /**
   * Storage is short: the gate is closed, or the store is above its low-water mark. Acknowledged
   * readings are then deleted at once instead of kept as synced (the uplink asks).
   */
  get short(): boolean {
    const last = this.#last;
    return !this.#open || (last !== null && last.usedBytes >= last.lowWaterBytes);
  }

  get lastAssessment(): StorageAssessment | null {
    return this.#last;
  }

  /** After a commit: check soon (coalesced). */
  noteCommitted(): void {
    void this.requestCheck();
  }

  /** A commit failed for lack of space: close now, keep closed for at least one interval, check. */
  noteStorageFull(error: unknown): void {
    this.#closedUntilMs = this.#now() + (this.#options.checkIntervalMs ?? 500);
    this.#setOpen(false);
    this.#events.note('sqlite-full', { err: error instanceof Error ? error.message : String(error) });
    void this.requestCheck();
  }

  /** Runs a check now, or once more after the one running; resolves when that check is done. */
  requestCheck(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#checking !== null) {
      this.#checkAgain = true;
      return this.#checking;
    }
    this.#checking = (async () => {
      do {
        this.#checkAgain = false;
        try {
          await this.#check();
        } catch (error) {
          this.#events.note('check-failed', { err: error instanceof Error ? error.message : String(error) });
        }
      } while (this.#checkAgain && !this.#closed);
    })().finally(() => {
      this.#checking = null;
    });
    return this.#checking;
  }

  /** Stops checking; readings waiting for space are the group commit's to refuse. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#checking;
    this.#events.close();
  }

  async #check(): Promise<void> {
    const { store, policy } = this.#options;
    let relieving = !this.#open;
    let syncedLeft = true;
    let pendingLeft = true;
    for (let step = 0; step < MAX_STEPS_PER_CHECK && !this.#closed; step += 1) {
      const assessment = assessStorage(await store.storageSample(), this.#options.maxDbBytes);
      this.#record(assessment);
      const next = nextStorageStep(assessment, { relieving, policy, syncedLeft, pendingLeft });
      switch (next) {
        case 'accept':
          // right after SQLITE_FULL the gate stays shut until the next timer check
          if (this.#now() >= this.#closedUntilMs) this.#setOpen(true);
          return;
        case 'withhold':
          if (this.#open) this.#events.note('full', summary(assessment));
          this.#setOpen(false);
          return;
        case 'prune-synced': {
          relieving = true;
          const pruned = await store.pruneSyncedForSpace(this.#chunk);
          if (pruned < this.#chunk) syncedLeft = false;
          this.#options.metrics?.syncedPrunedForSpace.inc(pruned);
          if (pruned > 0) this.#events.note('pruned', { pruned, ...summary(assessment) });
          break;
        }
        case 'drop-pending': {
          relieving = true;
          const { dropped, total } = await store.dropOldestPending(this.#chunk);
          if (dropped < this.#chunk) pendingLeft = false;
          this.#droppedTotal = total;
          if (dropped > 0) this.#events.note('dropped', { dropped, droppedTotal: total, ...summary(assessment) });
          break;
        }
      }
    }
    // still relieving after the step budget: the next check goes on (other store work ran between)
    this.#checkAgain = true;
  }

  #record(assessment: StorageAssessment): void {
    this.#last = assessment;
    const metrics = this.#options.metrics;
    metrics?.storageUsedBytes.set(assessment.usedBytes);
    metrics?.storageCapacityBytes.set(assessment.capacityBytes);
    metrics?.readingsWithheld.set(this.#open ? 0 : (this.#options.waitingReadings?.() ?? 0));
  }

  #setOpen(open: boolean): void {
    if (open === this.#open) return;
    this.#open = open;
    this.#options.metrics?.storageAccepting.set(open ? 1 : 0);
    if (open) {
      const assessment = this.#last;
      this.#log.info(
        assessment ? summary(assessment) : {},
        'edge storage has room again; accepting sensor readings (their PUBACKs follow their commits)',
      );
      const waiters = this.#openWaiters;
      this.#openWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

function summary(assessment: StorageAssessment): Record<string, number> {
  return {
    usedBytes: assessment.usedBytes,
    capacityBytes: assessment.capacityBytes,
    highWaterBytes: assessment.highWaterBytes,
  };
}

const MiB = (bytes: unknown) => `${(Number(bytes) / 1024 / 1024).toFixed(1)} MiB`;

function describe(key: string, sample: Record<string, unknown>): string {
  switch (key) {
    case 'full':
      return `edge storage is full (${MiB(sample['usedBytes'])} used of ${MiB(sample['capacityBytes'])}, a reserve kept for claims and acks): sensors' PUBACKs are withheld until synced readings can be pruned`;
    case 'pruned':
      return `storage is short: pruned ${String(sample['pruned'])} synced readings before their retention ended`;
    case 'dropped':
      return `storage is full: dropped ${String(sample['dropped'])} of the oldest pending readings (EDGE_OVERFLOW_POLICY=drop-oldest; ${String(sample['droppedTotal'])} dropped in all, reported upstream)`;
    case 'sqlite-full':
      return `a commit found the disk full (${String(sample['err'])}); its readings wait for space, their PUBACKs withheld`;
    default:
      return `storage check failed: ${String(sample['err'])}`;
  }
}
