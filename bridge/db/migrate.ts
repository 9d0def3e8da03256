/**
 * Applies the pending migration files of the connected engine's dialect, in order, and records
 * each in schema_migrations.
 *
 * CockroachDB rule: schema changes are never mixed with DML in one transaction. Each DDL
 * statement runs on its own (implicit transaction); the version is recorded afterwards in a
 * statement of its own. Every statement is idempotent (IF NOT EXISTS), so a run interrupted
 * between the DDL and the bookkeeping, or two bridges migrating at once, is harmless.
 */
import type { Logger } from '../../common/logger.js';
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

export async function migrate(
  db: Database,
  options: { dialect?: SqlDialect; directory?: string; logger?: Logger } = {},
): Promise<MigrationResult> {
  const dialect = options.dialect ?? (await detectDialect(db));
  const files = await loadMigrationFiles(options.directory ?? migrationsDirectory(dialect));
  await runDdl(db, CREATE_MIGRATIONS_TABLE);
  const done = new Set(
    (await db.any<{ version: string }>('SELECT version FROM schema_migrations')).map((row) => row.version),
  );
  const applied: string[] = [];
  for (const file of files) {
    if (done.has(file.version)) continue;
    for (const statement of file.statements) await runDdl(db, statement);
    await db.none('INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT (version) DO NOTHING', [file.version]);
    applied.push(file.version);
    options.logger?.info({ version: file.version, dialect }, 'migration applied');
  }
  return { dialect, applied };
}

async function runDdl(db: Database, statement: string): Promise<void> {
  try {
    await db.none(statement);
  } catch (error) {
    // Another process created the same object a moment ago; IF NOT EXISTS now sees it.
    if (!CONCURRENT_DDL_CODES.has(String((error as { code?: unknown }).code))) throw error;
    await db.none(statement);
  }
}
