/**
 * Multi-row INSERT statements of bounded size: each row is formatted once (pg-promise puts the
 * values inline), then grouped by bridge/db/statement-chunks.ts into statements of at most
 * 500 rows and 4 MiB of SQL text each, every statement ending with the same `suffix`
 * (ON CONFLICT …, RETURNING …). Run all of them in the same transaction.
 *
 * G7: the rows are formatted lazily, one statement's rows at a time: a writer that awaits
 * each statement before taking the next leaves the event loop between them (formatting 2000
 * readings with pg-promise takes 35–55 ms, which other devices' transactions used to wait for).
 */
import type pgPromise from 'pg-promise';
import { chunkRowsLazily, DEFAULT_STATEMENT_LIMITS, type StatementLimits } from './statement-chunks.js';
import { pgp } from './connection.js';

/**
 * The statements, as a generator: each statement's rows are formatted when it is taken.
 * `formatRow` writes one row's VALUES tuple; by default pgp.helpers.values(row, columns). A hot
 * table may pass its own, which must write exactly that text (a test compares them).
 */
export function* multiRowInsertStatements<T extends object>(
  rows: readonly T[],
  columns: pgPromise.ColumnSet<T>,
  suffix: string,
  limits: StatementLimits = DEFAULT_STATEMENT_LIMITS,
  formatRow: (row: T) => string = (row) => pgp.helpers.values(row, columns),
): Generator<string> {
  if (rows.length === 0) return;
  // the same text as pgp.helpers.insert(rows, columns) when everything fits in one statement
  const head = pgp.as.format('INSERT INTO $1^($2^) VALUES', [columns.table.name, columns.names]);
  const fixedBytes = Buffer.byteLength(head, 'utf8') + Buffer.byteLength(suffix, 'utf8');
  for (const chunk of chunkRowsLazily(formatted(rows, formatRow), (tuple) => tuple.bytes, fixedBytes, limits)) {
    yield head + chunk.map((tuple) => tuple.text).join(',') + suffix;
  }
}

function* formatted<T>(rows: readonly T[], formatRow: (row: T) => string): Generator<{ text: string; bytes: number }> {
  for (const row of rows) {
    const text = formatRow(row);
    yield { text, bytes: Buffer.byteLength(text, 'utf8') };
  }
}
