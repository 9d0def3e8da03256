/**
 * Applies the pending migration files of the connected engine's dialect, in order, and records
 * each in schema_migrations.
 *
 * CockroachDB rule: schema changes are never mixed with DML in one transaction. Each DDL
 * statement runs on its own (implicit transaction); the version is recorded afterwards in a
 * statement of its own. Every statement is idempotent (IF NOT EXISTS), so a run interrupted
 * between the DDL and the bookkeeping, or two bridges migrating at once, is harmless.
 *
 * CockroachDB runs a schema change as a job and can abort the statement's implicit transaction
 * with a retry error (SQLSTATE 40001, "restart transaction"; see "Transaction Retry Error
 * Reference" in its docs), e.g. when another node changes the schema at the same time. Every
 * statement here is idempotent, so such a statement runs again: at most 3 more times, with backoff.
 */
import type { Logger } from '../../common/logger.js';
import { classifyError, decideRetry, type RetryPolicy } from '../../common/retry-policy.js';
import type { Database } from './connection.js';
import { detectDialect, type SqlDialect } from './dialect.js';
import { loadMigrationFiles, migrationsDirectory } from './migration-files.js';

export interface MigrationResult {
  dialect: SqlDialect;
  /** versions applied by this run (empty when the schema was current) */
  applied: string[];
}

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version TEXT PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`;

/** SQLSTATEs a concurrent CREATE … IF NOT EXISTS can raise in PostgreSQL (catalog races). */
const CONCURRENT_DDL_CODES = new Set(['23505', '42P07', '42710']);

/** A statement aborted with a retry error runs again up to 3 times (4 attempts), 200 ms doubling. */
export const DDL_RETRY_POLICY: RetryPolicy = {
  initialDelayMs: 200,
  maxDelayMs: 2000,
  multiplier: 2,
  jitter: 'equal',
  maxAttempts: 4,
};

export interface MigrateOptions {
  dialect?: SqlDialect;
  directory?: string;
  logger?: Logger;
  /** retries of a statement aborted with SQLSTATE 40001; default DDL_RETRY_POLICY */
  retryPolicy?: RetryPolicy;
}

export async function migrate(db: Database, options: MigrateOptions = {}): Promise<MigrationResult> {
  const dialect = options.dialect ?? (await detectDialect(db));
  const files = await loadMigrationFiles(options.directory ?? migrationsDirectory(dialect));
  const run = (statement: string, values?: unknown[]): Promise<void> =>
    retryOnConflict(
      () => runDdl(db, statement, values),
      options.retryPolicy ?? DDL_RETRY_POLICY,
      (error, delayMs) =>
        options.logger?.warn(
          { err: error, statement: statement.split('\n')[0], retryInMs: delayMs },
          'migration statement aborted; retrying',
        ),
    );
  await run(CREATE_MIGRATIONS_TABLE);
  const done = new Set(
    (await db.any<{ version: string }>('SELECT version FROM schema_migrations')).map((row) => row.version),
  );
  const applied: string[] = [];
  for (const file of files) {
    if (done.has(file.version)) continue;
    for (const statement of file.statements) await run(statement);
    await run('INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT (version) DO NOTHING', [file.version]);
    applied.push(file.version);
    options.logger?.info({ version: file.version, dialect }, 'migration applied');
  }
  return { dialect, applied };
}

async function runDdl(db: Database, statement: string, values?: unknown[]): Promise<void> {
  try {
    await db.none(statement, values);
  } catch (error) {
    // Another process created the same object a moment ago; IF NOT EXISTS now sees it.
    if (!CONCURRENT_DDL_CODES.has(String((error as { code?: unknown }).code))) throw error;
    await db.none(statement, values);
  }
}

/** Runs `work` again while it fails with a serialization/retry error (40001, 40P01, 40003) and the policy allows. */
async function retryOnConflict(
  work: () => Promise<void>,
  policy: RetryPolicy,
  onRetry: (error: unknown, delayMs: number) => void,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await work();
      return;
    } catch (error) {
      const errorClass = classifyError(error);
      const decision = decideRetry(policy, attempt, errorClass);
      if (errorClass !== 'conflict' || !decision.shouldRetry) throw error;
      onRetry(error, decision.delayMs);
      await new Promise((resolve) => setTimeout(resolve, decision.delayMs));
    }
  }
}
