/**
 * Group commit: callers hand in readings one at a time and each caller's promise resolves only
 * after the transaction containing its reading has committed. While one commit runs, new arrivals
 * queue up and go into the next single commit (natural batching: the busier the listener, the
 * larger each commit), capped at maxRecordsPerCommit. A failed commit rejects every caller in it
 * with the error, so nothing is half-acknowledged.
 *
 * The next commit is started with setImmediate rather than at once: @libsql/client's file: mode
 * runs SQLite synchronously on the event loop, so sockets are only read between commits, and
 * setImmediate lets the I/O that piled up during a commit join the next one.
 *
 * Storage full (G8): while the admission gate (the agent's StorageGuard) is closed, no commit is
 * started and the readings wait in the queue, so their sensors get no PUBACK until space returns
 * (EDGE_OVERFLOW_POLICY=reject-new). A commit that fails because the disk is full (SQLITE_FULL:
 * someone else filled it, or the max_page_count backstop) is not rejected: its readings go back to
 * the head of the queue and wait for the gate too. Rejecting would make aedes close the sensor's
 * connection (its error path), and the sensor would reconnect and re-send at once: the ~20
 * reconnects/s seen on a full disk. At most maxWaiting readings wait; beyond that a write is
 * refused at once.
 */

export interface GroupCommitOptions<T> {
  /** commits all given records in one transaction; rejects if nothing was committed */
  commit: (records: T[]) => Promise<unknown>;
  /** most records in one commit (default 2000) */
  maxRecordsPerCommit?: number;
  /** after each successful commit, with the number of records it carried */
  onCommitted?: (count: number) => void;
  /** G8: commits start only while open; readings wait (no PUBACK) while it is closed */
  admission?: Admission;
  /** G8: a commit failure that means "no space": its readings wait for the gate instead of failing */
  isStorageFull?: (error: unknown) => boolean;
  /** called with such a failure (the guard closes the gate) */
  onStorageFull?: (error: unknown) => void;
  /** most readings waiting while the gate is closed before new ones are refused (default 50 000) */
  maxWaiting?: number;
}

/** A gate for commits: the agent's StorageGuard. */
export interface Admission {
  readonly open: boolean;
  /** resolves when the gate is (or becomes) open */
  whenOpen(): Promise<void>;
}

export interface GroupCommitStats {
  commits: number;
  committedRecords: number;
  failedCommits: number;
  largestCommit: number;
  /** commits that found no space and were put back to wait */
  storageFullRetries: number;
}

interface Waiting<T> {
  record: T;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export const DEFAULT_MAX_RECORDS_PER_COMMIT = 2000;
export const DEFAULT_MAX_WAITING = 50_000;

export class GroupCommitWriter<T> {
  readonly #commit: (records: T[]) => Promise<unknown>;
  readonly #maxRecordsPerCommit: number;
  readonly #onCommitted: ((count: number) => void) | undefined;
  readonly #options: GroupCommitOptions<T>;
  readonly #maxWaiting: number;
  #queue: Waiting<T>[] = [];
  #scheduled = false;
  #committing = false;
  #waitingForSpace = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  readonly #stats: GroupCommitStats = {
    commits: 0,
    committedRecords: 0,
    failedCommits: 0,
    largestCommit: 0,
    storageFullRetries: 0,
  };

  constructor(options: GroupCommitOptions<T>) {
    this.#options = options;
    this.#commit = options.commit;
    this.#maxRecordsPerCommit = Math.max(1, options.maxRecordsPerCommit ?? DEFAULT_MAX_RECORDS_PER_COMMIT);
    this.#onCommitted = options.onCommitted;
    this.#maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
  }

  /** Resolves once `record` is committed; rejects with the commit's error if its commit failed. */
  write(record: T): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the group-commit writer is closed; the reading was not stored'));
    if (this.#waitingForSpace && this.#queue.length >= this.#maxWaiting) {
      return Promise.reject(
        new Error(
          `edge storage is full and ${this.#queue.length} readings already wait for space; send it again later`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ record, resolve, reject });
      this.#schedule();
    });
  }

  /** Records waiting for a commit (not counting the one running). */
  get queued(): number {
    return this.#queue.length;
  }

  get stats(): Readonly<GroupCommitStats> {
    return { ...this.#stats };
  }

  /** Whether readings are waiting for the storage gate to open. */
  get waitingForSpace(): boolean {
    return this.#waitingForSpace;
  }

  /**
   * Stops accepting records and resolves once everything already accepted has been committed (or
   * failed). Readings waiting for space are refused now (no PUBACK: their sensors send them again
   * to the next run) instead of holding the shutdown for as long as the store is full.
   */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#waitingForSpace) this.#refuseWaiting();
    return this.#whenIdle();
  }

  #refuseWaiting(): void {
    const error = new Error('the edge agent is stopping while its storage is full; the reading was not stored');
    for (const waiting of this.#queue.splice(0)) waiting.reject(error);
  }

  #whenIdle(): Promise<void> {
    if (!this.#busy()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #busy(): boolean {
    return this.#scheduled || this.#committing || this.#queue.length > 0;
  }

  #schedule(): void {
    if (this.#scheduled || this.#committing || this.#waitingForSpace) return;
    const admission = this.#options.admission;
    if (admission !== undefined && !admission.open) {
      // G8: no commit while the store is full; the readings (and their PUBACKs) wait
      this.#waitingForSpace = true;
      void admission.whenOpen().then(() => {
        this.#waitingForSpace = false;
        if (this.#queue.length > 0) this.#schedule();
        else this.#notifyIdle();
      });
      return;
    }
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#commitNextGroup();
    });
  }

  async #commitNextGroup(): Promise<void> {
    const group = this.#queue.splice(0, this.#maxRecordsPerCommit);
    if (group.length > 0) {
      this.#committing = true;
      let committed = false;
      try {
        await this.#commit(group.map((waiting) => waiting.record));
        committed = true;
      } catch (error) {
        if (this.#options.isStorageFull?.(error) && !this.#closed) {
          // G8 + G1: nothing of the group was committed; it waits for space, its PUBACKs withheld
          this.#stats.storageFullRetries += 1;
          this.#queue.unshift(...group);
          this.#options.onStorageFull?.(error);
        } else {
          this.#stats.failedCommits += 1;
          for (const waiting of group) waiting.reject(error);
        }
      } finally {
        this.#committing = false;
      }
      if (committed) {
        this.#stats.commits += 1;
        this.#stats.committedRecords += group.length;
        this.#stats.largestCommit = Math.max(this.#stats.largestCommit, group.length);
        // G1: writers (and so the sensors' PUBACKs) are released only after the commit
        for (const waiting of group) waiting.resolve();
        const onCommitted = this.#onCommitted;
        // outside this loop: a throwing hook surfaces as an uncaught error instead of stalling the queue
        if (onCommitted) queueMicrotask(() => onCommitted(group.length));
      }
    }
    if (this.#queue.length > 0) {
      this.#schedule();
      if (this.#closed && this.#waitingForSpace) this.#refuseWaiting();
      else return;
    }
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#busy()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
