/**
 * Which SQL engine is behind the connection. The DML is the same for both; DDL and the
 * retention mechanism differ (CockroachDB: row-level TTL, PostgreSQL: a bounded delete job).
 */
import type { Database } from './connection.js';

export type SqlDialect = 'cockroachdb' | 'postgresql';

/** CockroachDB answers `SELECT version()` with e.g. "CockroachDB CCL v24.1.0 (x86_64-…)". */
export function dialectFromVersion(version: string): SqlDialect {
  return /cockroachdb/i.test(version) ? 'cockroachdb' : 'postgresql';
}

export async function detectDialect(db: Database): Promise<SqlDialect> {
  const row = await db.one<{ version: string }>('SELECT version() AS version');
  return dialectFromVersion(row.version);
}
