/**
 * Migration files on disk: bridge/db/migrations/{dialect}/NNN_name.sql, applied in name order.
 * A file is a list of statements separated by semicolons; the runner executes them one at a time.
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { SqlDialect } from './dialect.js';

export interface MigrationFile {
  /** the file name without .sql, e.g. "001_initial_schema"; recorded in schema_migrations */
  version: string;
  statements: string[];
}

export function migrationsDirectory(dialect: SqlDialect): string {
  return fileURLToPath(new URL(`./migrations/${dialect}/`, import.meta.url));
}

export async function loadMigrationFiles(directory: string): Promise<MigrationFile[]> {
  const names = (await readdir(directory)).filter((name) => name.endsWith('.sql')).sort();
  return Promise.all(
    names.map(async (name) => ({
      version: name.slice(0, -'.sql'.length),
      statements: splitSqlStatements(await readFile(`${directory}/${name}`, 'utf8')),
    })),
  );
}

/**
 * Splits SQL text into statements at semicolons outside quotes, dropping `--` comments and
 * empty statements. Understands '…' strings (with '' escapes) and "…" identifiers; dollar-quoted
 * bodies are not supported (the schema has no functions or triggers, by design).
 */
export function splitSqlStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = '';
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < sql.length; i += 1) {
    const char = sql[i] as string;
    if (quote !== null) {
      current += char;
      if (char === quote) quote = null; // a doubled quote re-opens on the next character
      continue;
    }
    if (char === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i += 1;
      current += '\n';
      continue;
    }
    if (char === ';') {
      pushStatement(statements, current);
      current = '';
      continue;
    }
    if (char === "'" || char === '"') quote = char;
    current += char;
  }
  pushStatement(statements, current);
  return statements;
}

function pushStatement(statements: string[], text: string): void {
  const statement = text
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== '')
    .join('\n')
    .trim();
  if (statement !== '') statements.push(statement);
}
