import { describe, expect, it } from 'vitest';
import { dialectFromVersion } from '../../bridge/db/dialect.js';
import { loadMigrationFiles, migrationsDirectory, splitSqlStatements } from '../../bridge/db/migration-files.js';

describe('splitSqlStatements', () => {
  it('splits at semicolons outside quotes and drops comments', () => {
    const sql = `-- header; with a semicolon
CREATE TABLE a (x TEXT DEFAULT 'a;b', "odd;name" INT); -- trailing
INSERT INTO a VALUES ('it''s; fine');

  `;
    expect(splitSqlStatements(sql)).toEqual([
      `CREATE TABLE a (x TEXT DEFAULT 'a;b', "odd;name" INT)`,
      `INSERT INTO a VALUES ('it''s; fine')`,
    ]);
  });
});

describe('dialectFromVersion', () => {
  it('recognizes CockroachDB and defaults to PostgreSQL', () => {
    expect(
      dialectFromVersion('CockroachDB CCL v24.1.3 (x86_64-pc-linux-gnu, built 2024/07/15 00:00:00, go1.22.5)'),
    ).toBe('cockroachdb');
    expect(dialectFromVersion('PostgreSQL 17.2 on x86_64-pc-linux-gnu, compiled by gcc')).toBe('postgresql');
  });
});

/** table -> "column type…" lines of every CREATE TABLE in a dialect's migrations */
async function tableColumns(dialect: 'cockroachdb' | 'postgresql'): Promise<Map<string, string[]>> {
  const tables = new Map<string, string[]>();
  for (const file of await loadMigrationFiles(migrationsDirectory(dialect))) {
    for (const statement of file.statements) {
      const match = /^CREATE TABLE IF NOT EXISTS (\w+) \(\n([\s\S]*?)\n\)/.exec(statement);
      if (!match) continue;
      const columns = (match[2] as string)
        .split('\n')
        .map((line) => line.trim().replace(/,$/, ''))
        .filter((line) => !/^(INDEX|UNIQUE|PRIMARY KEY)\b/.test(line));
      tables.set(match[1] as string, columns);
    }
  }
  return tables;
}

describe('the two schema variants', () => {
  it('have the same files', async () => {
    const names = async (d: 'cockroachdb' | 'postgresql') =>
      (await loadMigrationFiles(migrationsDirectory(d))).map((f) => f.version);
    expect(await names('cockroachdb')).toEqual(await names('postgresql'));
  });

  it('define the same tables with the same columns and types', async () => {
    const cockroach = await tableColumns('cockroachdb');
    const postgres = await tableColumns('postgresql');
    expect([...cockroach.keys()].sort()).toEqual([
      'commands',
      'conflict_log',
      'device_configs',
      'devices',
      'revoked_certificates',
      'sync_status',
      'telemetry_data',
    ]);
    expect(Object.fromEntries(postgres)).toEqual(Object.fromEntries(cockroach));
  });

  it('give every integer column the same explicit 64-bit width (INT is 32-bit on PostgreSQL, 64-bit on CockroachDB)', async () => {
    for (const dialect of ['cockroachdb', 'postgresql'] as const) {
      const columns = [...(await tableColumns(dialect)).values()].flat();
      // the type and constraints, after the column name (revoked_certificates has a column named serial)
      const typeOf = (column: string) => column.split(/\s+/).slice(1).join(' ');
      expect(columns.filter((column) => /\b(INT|INTEGER|INT4|INT8|SMALLINT|SERIAL)\b/i.test(typeOf(column)))).toEqual(
        [],
      );
      expect(columns.filter((column) => /\bBIGINT\b/.test(column))).toEqual([
        'version BIGINT DEFAULT 1',
        'version BIGINT NOT NULL',
        'pending_records_count BIGINT DEFAULT 0',
        'total_synced_records BIGINT DEFAULT 0',
      ]);
    }
  });

  it('quote "timestamp" and never leave telemetry_data.synced_at (the retention key) NULL', async () => {
    for (const dialect of ['cockroachdb', 'postgresql'] as const) {
      const telemetry = (await tableColumns(dialect)).get('telemetry_data') ?? [];
      expect(telemetry).toContain('"timestamp" TIMESTAMPTZ NOT NULL');
      expect(telemetry).toContain('synced_at TIMESTAMPTZ NOT NULL DEFAULT now()');
      const statements = (await loadMigrationFiles(migrationsDirectory(dialect)))
        .flatMap((f) => f.statements)
        .join('\n');
      expect(statements).not.toMatch(/[^"]timestamp DESC/);
    }
  });

  it('are idempotent and keep the CockroachDB-only clauses in the CockroachDB variant', async () => {
    for (const dialect of ['cockroachdb', 'postgresql'] as const) {
      for (const file of await loadMigrationFiles(migrationsDirectory(dialect))) {
        for (const statement of file.statements)
          expect(statement).toMatch(
            /^(CREATE (TABLE|(UNIQUE )?INDEX) IF NOT EXISTS |ALTER TABLE \w+ ADD COLUMN IF NOT EXISTS )/,
          );
      }
    }
    const cockroach = (await loadMigrationFiles(migrationsDirectory('cockroachdb')))
      .flatMap((f) => f.statements)
      .join('\n');
    const postgres = (await loadMigrationFiles(migrationsDirectory('postgresql')))
      .flatMap((f) => f.statements)
      .join('\n');
    // the row-level TTL expires what bridge/db/retention.ts deletes on PostgreSQL: synced_at older than 90 days
    expect(cockroach).toContain("ttl_expiration_expression = 'synced_at + INTERVAL ''90 days'''");
    expect(cockroach).toContain("ttl_job_cron = '0 */4 * * *'");
    expect(cockroach).toContain('ttl_delete_rate_limit = 10000');
    expect(cockroach).not.toContain('ttl_expire_after');
    expect(cockroach).toContain('INDEX idx_sensor_time (sensor_id, "timestamp" DESC) USING HASH');
    expect(postgres).not.toMatch(/ttl_|USING HASH|^\s+INDEX /m);
  });
});
