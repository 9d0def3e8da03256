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
 */

export interface GroupCommitOptions<T> {
  /** commits all given records in one transaction; rejects if nothing was committed */
  commit: (records: T[]) => Promise<unknown>;
  /** most records in one commit (default 2000) */
  maxRecordsPerCommit?: number;
  /** after each successful commit, with the number of records it carried */
  onCommitted?: (count: number) => void;
}

export interface GroupCommitStats {
  commits: number;
  committedRecords: number;
  failedCommits: number;
  largestCommit: number;
}

interface Waiting<T> {
  record: T;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export const DEFAULT_MAX_RECORDS_PER_COMMIT = 2000;

export class GroupCommitWriter<T> {
  readonly #commit: (records: T[]) => Promise<unknown>;
  readonly #maxRecordsPerCommit: number;
  readonly #onCommitted: ((count: number) => void) | undefined;
  #queue: Waiting<T>[] = [];
  #scheduled = false;
  #committing = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  readonly #stats: GroupCommitStats = { commits: 0, committedRecords: 0, failedCommits: 0, largestCommit: 0 };

  constructor(options: GroupCommitOptions<T>) {
    this.#commit = options.commit;
    this.#maxRecordsPerCommit = Math.max(1, options.maxRecordsPerCommit ?? DEFAULT_MAX_RECORDS_PER_COMMIT);
    this.#onCommitted = options.onCommitted;
  }

  /** Resolves once `record` is committed; rejects with the commit's error if its commit failed. */
  write(record: T): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the group-commit writer is closed; the reading was not stored'));
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

  /** Stops accepting records and resolves once everything already accepted has been committed (or failed). */
  close(): Promise<void> {
    this.#closed = true;
    return this.#whenIdle();
  }

  #whenIdle(): Promise<void> {
    if (!this.#busy()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #busy(): boolean {
    return this.#scheduled || this.#committing || this.#queue.length > 0;
  }

  #schedule(): void {
    if (this.#scheduled || this.#committing) return;
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
        this.#stats.failedCommits += 1;
        for (const waiting of group) waiting.reject(error);
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
      return;
    }
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
