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
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createClient, type Client } from '@libsql/client';
import { migrate } from './schema.js';
import { SerialQueue } from './serial-queue.js';

export interface EdgeDatabaseOptions {
  /** how long a statement waits for a lock held by another process; default 5000 ms */
  busyTimeoutMs?: number;
}

export interface EdgeDatabase {
  /** Runs `work` with exclusive use of the connection (operations run one at a time, in order). */
  exclusive<T>(work: (client: Client) => Promise<T>): Promise<T>;
  /** Waits for queued operations, then closes the connection. Idempotent. */
  close(): Promise<void>;
  readonly url: string;
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

export async function openEdgeDatabase(url: string, options: EdgeDatabaseOptions = {}): Promise<EdgeDatabase> {
  const filePath = databaseFilePath(url);
  if (filePath !== null) mkdirSync(dirname(filePath), { recursive: true });

  const client = createClient({ url, concurrency: 1, timeout: options.busyTimeoutMs ?? 5000 });
  try {
    const journal = await client.execute('PRAGMA journal_mode = WAL');
    const mode = journal.rows[0]?.['journal_mode'];
    if (filePath !== null && mode !== 'wal')
      throw new Error(`could not switch ${filePath} to WAL (journal_mode is ${JSON.stringify(mode)})`);
    // G1: a committed reading survives a crash or power loss (WAL + synchronous=FULL)
    await client.execute('PRAGMA synchronous = FULL');
    await migrate(client);
  } catch (error) {
    client.close();
    throw error;
  }

  const queue = new SerialQueue();
  let closing: Promise<void> | null = null;
  return {
    url,
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
