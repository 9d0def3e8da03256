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
    expect(dialectFromVersion('CockroachDB CCL v24.1.3 (x86_64-pc-linux-gnu, built 2024/07/15 00:00:00, go1.22.5)')).toBe('cockroachdb');
    expect(dialectFromVersion('PostgreSQL 17.2 on x86_64-pc-linux-gnu, compiled by gcc')).toBe('postgresql');
  });
});

/** table -> "column type…" lines of every CREATE TABLE in a dialect's migrations */
async function tableColumns(dialect: 'cockroachdb' | 'postgresql'): Promise<Map<string, string[]>> {
  const tables = new Map<string, string[]>();
  for (const file of await loadMigrationFiles(migrationsDirectory(dialect))) {
    for (const statement of file.statements) {
      const match = /^CREATE TABLE IF NOT EXISTS (\w+) \(\n([\s\S]*)\n\)/.exec(statement);
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
    const names = async (d: 'cockroachdb' | 'postgresql') => (await loadMigrationFiles(migrationsDirectory(d))).map((f) => f.version);
    expect(await names('cockroachdb')).toEqual(await names('postgresql'));
  });

  it('define the same tables with the same columns and types', async () => {
    const cockroach = await tableColumns('cockroachdb');
    const postgres = await tableColumns('postgresql');
    expect([...cockroach.keys()].sort()).toEqual(['commands', 'conflict_log', 'device_configs', 'devices', 'sync_status', 'telemetry_data']);
    expect(Object.fromEntries(postgres)).toEqual(Object.fromEntries(cockroach));
  });

  it('are idempotent and keep the CockroachDB-only clauses in the CockroachDB variant', async () => {
    for (const dialect of ['cockroachdb', 'postgresql'] as const) {
      for (const file of await loadMigrationFiles(migrationsDirectory(dialect))) {
        for (const statement of file.statements) expect(statement).toMatch(/^CREATE (TABLE|INDEX) IF NOT EXISTS /);
      }
    }
    const cockroach = (await loadMigrationFiles(migrationsDirectory('cockroachdb'))).flatMap((f) => f.statements).join('\n');
    const postgres = (await loadMigrationFiles(migrationsDirectory('postgresql'))).flatMap((f) => f.statements).join('\n');
    expect(cockroach).toContain("WITH (ttl_expire_after = '90 days')");
    expect(postgres).not.toMatch(/ttl_expire_after|^\s+INDEX /m);
  });
});
