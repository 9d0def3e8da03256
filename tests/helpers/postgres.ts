/**
 * A fresh, real PostgreSQL per test file, configured like the bridge expects CockroachDB to
 * behave: SERIALIZABLE by default (so 40001 retry paths are real), fsync off for speed. Stopped
 * (and its data folder removed) at teardown; pools opened with openTestDatabase are closed before.
 */
import { closeDatabase, openDatabase, type Database, type DatabaseOptions } from '../../bridge/db/connection.js';
import { migrate } from '../../bridge/db/migrate.js';
import { SERIALIZABLE_POSTGRES_FLAGS, startEmbeddedPostgres } from '../../devtools/embedded-postgres.js';
import { freePort } from '../../devtools/free-port.js';
import { registerCleanup } from './teardown.js';

export interface TestPostgres {
  connectionString: string;
  port: number;
  close(): Promise<void>;
}

const TEST_FLAGS = [...SERIALIZABLE_POSTGRES_FLAGS, '-c', 'fsync=off'];

/** Starts PostgreSQL on a free port; retries with another port if the chosen one was taken meanwhile. */
export async function startTestPostgres(): Promise<TestPostgres> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    try {
      const server = await startEmbeddedPostgres({
        port: await freePort(),
        persistent: false,
        postgresFlags: TEST_FLAGS,
      });
      return {
        connectionString: server.connectionString,
        port: server.port,
        close: registerCleanup(() => server.close()),
      };
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

export interface TestDatabaseOptions extends Partial<Omit<DatabaseOptions, 'applicationName'>> {
  /** run the bridge's migrations first (default false) */
  migrate?: boolean;
}

/** A pg-promise pool on `postgres` (or on options.connectionString), closed at teardown. */
export async function openTestDatabase(
  postgres: Pick<TestPostgres, 'connectionString'>,
  applicationName: string,
  options: TestDatabaseOptions = {},
): Promise<Database> {
  const { migrate: runMigrations = false, ...rest } = options;
  const db = openDatabase({ connectionString: postgres.connectionString, applicationName, ...rest });
  registerCleanup(() => closeDatabase(db));
  if (runMigrations) await migrate(db);
  return db;
}

/** The rows of telemetry_data for one device. */
export async function storedRowCount(db: Database, deviceId: string): Promise<number> {
  return (await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data WHERE device_id = $1', [deviceId]))
    .n;
}

export interface TableLock {
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/**
 * An EXCLUSIVE lock on `table`, held in an open transaction on a connection of its own: writers
 * wait (a bridge transaction stops at its INSERT), readers do not. Held until commit() or
 * rollback(); rolled back and its connection returned at teardown if the test did neither.
 */
export async function lockTable(db: Database, table: string): Promise<TableLock> {
  const connection = await db.connect();
  let ended: Promise<void> | undefined;
  const end = (statement: 'COMMIT' | 'ROLLBACK') => {
    ended ??= (async () => {
      try {
        await connection.none(statement);
      } finally {
        await connection.done();
      }
    })();
    return ended;
  };
  registerCleanup(() => end('ROLLBACK'));
  await connection.none(`BEGIN; LOCK TABLE ${table} IN EXCLUSIVE MODE`);
  return { commit: () => end('COMMIT'), rollback: () => end('ROLLBACK') };
}

/** A command's row in the control plane's `commands` table (the columns the downstream tests look at). */
export interface StoredCommand {
  status: string;
  delivered_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  executed_at: Date | null;
  result: unknown;
  error: string | null;
}

export function storedCommand(db: Database, commandId: string): Promise<StoredCommand> {
  return db.one<StoredCommand>(
    'SELECT status, delivered_at, started_at, finished_at, executed_at, result, error FROM commands WHERE command_id = $1',
    [commandId],
  );
}
