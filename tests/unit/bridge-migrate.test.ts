import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { migrate } from '../../bridge/db/migrate.js';
import type { RetryPolicy } from '../../common/retry-policy.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const FAST: RetryPolicy = { initialDelayMs: 1, maxDelayMs: 2, multiplier: 2, jitter: 'none', maxAttempts: 4 };
const DDL = 'CREATE TABLE IF NOT EXISTS a (x TEXT)';

function migrationsWith(sql: string): string {
  const directory = tempDirectory('bridge-migrate');
  writeFileSync(join(directory, '001_a.sql'), sql);
  return directory;
}

/** A database that fails the statement `failing` with `code`, `failures` times; records every statement. */
function fakeDatabase(failing: string, code: string, failures: number): { db: Database; statements: string[] } {
  const statements: string[] = [];
  let left = failures;
  const db = {
    none: (sql: string) => {
      statements.push(sql);
      if (sql === failing && left > 0) {
        left -= 1;
        return Promise.reject(
          Object.assign(
            new Error(code === '40001' ? 'restart transaction: TransactionRetryWithProtoRefreshError' : 'syntax error'),
            { code },
          ),
        );
      }
      return Promise.resolve();
    },
    any: () => Promise.resolve([]),
  };
  return { db: db as unknown as Database, statements };
}

describe('migrate', () => {
  it('runs a DDL statement aborted with 40001 again, up to 3 times', async () => {
    const { db, statements } = fakeDatabase(DDL, '40001', 3);
    const result = await migrate(db, {
      dialect: 'cockroachdb',
      directory: migrationsWith(`${DDL};`),
      retryPolicy: FAST,
    });
    expect(result).toEqual({ dialect: 'cockroachdb', applied: ['001_a'] });
    expect(statements.filter((sql) => sql === DDL)).toHaveLength(4);
  });

  it('gives up with the retry error after the third retry', async () => {
    const { db, statements } = fakeDatabase(DDL, '40001', 4);
    await expect(
      migrate(db, { dialect: 'cockroachdb', directory: migrationsWith(`${DDL};`), retryPolicy: FAST }),
    ).rejects.toMatchObject({ code: '40001' });
    expect(statements.filter((sql) => sql === DDL)).toHaveLength(4);
    expect(statements.some((sql) => sql.startsWith('INSERT INTO schema_migrations'))).toBe(false);
  });

  it('does not retry other errors', async () => {
    const { db, statements } = fakeDatabase(DDL, '42601', 1);
    await expect(
      migrate(db, { dialect: 'cockroachdb', directory: migrationsWith(`${DDL};`), retryPolicy: FAST }),
    ).rejects.toMatchObject({ code: '42601' });
    expect(statements.filter((sql) => sql === DDL)).toHaveLength(1);
  });

  it('retries with backoff by default', async () => {
    const { db } = fakeDatabase(DDL, '40001', 1);
    const started = performance.now();
    await migrate(db, { dialect: 'cockroachdb', directory: migrationsWith(`${DDL};`) });
    expect(performance.now() - started).toBeGreaterThanOrEqual(90); // 'equal' jitter: at least half of 200 ms
  });
});
