/**
 * Opens the edge's libSQL database: one connection, WAL, synchronous=FULL, a busy timeout, and
 * the schema migrated to the current version.
 *
 * Why one connection: @libsql/client (0.18) keeps a pool of up to `concurrency` (default 20)
 * native connections for a file: URL, and PRAGMAs such as synchronous are per connection, so a
 * PRAGMA run through client.execute() would only reach whichever connection served it. With
 * `concurrency: 1` and every call serialized through a SerialQueue, the PRAGMAs below hold for all
 * work; the busy timeout is passed as the client's `timeout` option, which libsql applies to
 * every connection it opens.
 *
 * The files hold every reading of the device, so they are the owner's alone (0600): the database
 * file is created (or tightened) before libSQL opens it, and SQLite's unix VFS creates the -wal
 * and -shm files with the database file's permissions (os_unix.c, findCreateFileMode), so they
 * follow. Without this they would be 0644 under the usual umask 022. process.umask() is not used:
 * it is process-wide and not safe to change while worker threads run.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createClient, type Client, type Transaction } from '@libsql/client';
import { migrate } from './schema.js';
import { walLimits } from './storage-budget.js';
import { SerialQueue } from './serial-queue.js';

export interface EdgeDatabaseOptions {
  /** how long a statement waits for a lock held by another process; default 5000 ms */
  busyTimeoutMs?: number;
  /**
   * G8: the configured cap (EDGE_MAX_DB_BYTES). Sets PRAGMA max_page_count (SQLITE_FULL beyond
   * it, a backstop behind the agent's high-water mark) and keeps the WAL within a quarter of the
   * reserve (storage-budget.ts, walLimits). No cap when omitted.
   */
  maxDbBytes?: number;
}

export interface EdgeDatabase {
  /** Runs `work` with exclusive use of the connection (operations run one at a time, in order). */
  exclusive<T>(work: (client: Client) => Promise<T>): Promise<T>;
  /** Waits for queued operations, then closes the connection. Idempotent. */
  close(): Promise<void>;
  readonly url: string;
  /** the database file, or null in memory */
  readonly filePath: string | null;
}

/**
 * The file a `file:` URL names, or null for an in-memory database. Accepts `file:relative.db`,
 * `file:/absolute.db` and `file:///absolute.db`.
 */
export function databaseFilePath(url: string): string | null {
  if (!url.startsWith('file:')) {
    throw new Error(`the edge database must be a local file: URL (e.g. file:.data/edge.db), got '${url}'`);
  }
  const withoutQuery = url.slice('file:'.length).split('?')[0] ?? '';
  if (withoutQuery.startsWith(':memory:') || withoutQuery === '') return null;
  let path = withoutQuery;
  if (path.startsWith('//localhost/')) path = path.slice('//localhost'.length);
  else if (path.startsWith('///')) path = path.slice(2);
  else if (path.startsWith('//'))
    throw new Error(`file: URL '${url}' names a host; use file:/absolute/path or file:relative/path`);
  return resolve(decodeURIComponent(path));
}

/** Creates the database file 0600 if it is missing and tightens an existing one and its -wal/-shm to 0600. */
export function restrictToOwner(filePath: string): void {
  mkdirSync(dirname(filePath), { recursive: true, mode: 0o700 }); // only folders it creates get 0700
  closeSync(openSync(filePath, 'a', 0o600)); // an empty file is a new database to SQLite
  for (const path of [filePath, `${filePath}-wal`, `${filePath}-shm`]) {
    if (existsSync(path)) chmodSync(path, 0o600);
  }
}

/** PRAGMAs are per connection: applied on the one connection every operation uses. */
async function applyStorageLimits(client: Client, filePath: string | null, maxDbBytes: number): Promise<void> {
  const pageSize = Number((await client.execute('PRAGMA page_size')).rows[0]?.['page_size']);
  let capacity = maxDbBytes;
  if (filePath !== null) {
    const fs = statfsSync(dirname(filePath));
    capacity = Math.min(maxDbBytes, fs.blocks * fs.bsize);
  }
  const limits = walLimits(maxDbBytes, capacity, pageSize);
  await client.execute(`PRAGMA max_page_count = ${limits.maxPageCount}`);
  await client.execute(`PRAGMA wal_autocheckpoint = ${limits.autocheckpointPages}`);
  await client.execute(`PRAGMA journal_size_limit = ${limits.journalSizeLimitBytes}`);
}

export async function openEdgeDatabase(url: string, options: EdgeDatabaseOptions = {}): Promise<EdgeDatabase> {
  const filePath = databaseFilePath(url);
  if (filePath !== null) restrictToOwner(filePath);

  const client = createClient({ url, concurrency: 1, timeout: options.busyTimeoutMs ?? 5000 });
  try {
    const journal = await client.execute('PRAGMA journal_mode = WAL');
    const mode = journal.rows[0]?.['journal_mode'];
    if (filePath !== null && mode !== 'wal')
      throw new Error(`could not switch ${filePath} to WAL (journal_mode is ${JSON.stringify(mode)})`);
    // G1: a committed reading survives a crash or power loss (WAL + synchronous=FULL)
    await client.execute('PRAGMA synchronous = FULL');
    await migrate(client);
    if (options.maxDbBytes !== undefined) await applyStorageLimits(client, filePath, options.maxDbBytes);
  } catch (error) {
    client.close();
    throw error;
  }

  const queue = new SerialQueue();
  let closing: Promise<void> | null = null;
  return {
    url,
    filePath,
    exclusive: (work) => {
      if (closing !== null) return Promise.reject(new Error(`the edge database ${url} is closed`));
      return queue.run(() => work(client));
    },
    close: () => {
      closing ??= queue.idle().then(() => client.close());
      return closing;
    },
  };
}

/**
 * Runs `work` in one libSQL write transaction on `client`: committed when `work` resolves, rolled
 * back (by close) when it throws. The one wrapper of the telemetry and the downstream stores.
 */
export async function inWriteTransaction<T>(
  client: Pick<Client, 'transaction'>,
  work: (transaction: Transaction) => Promise<T>,
): Promise<T> {
  const transaction = await client.transaction('write');
  try {
    const result = await work(transaction);
    await transaction.commit();
    return result;
  } finally {
    transaction.close(); // rolls back unless committed
  }
}
