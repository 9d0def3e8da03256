/**
 * Multi-row INSERT statements of bounded size: the rows are formatted once (pg-promise puts the
 * values inline), then grouped by bridge/db/statement-chunks.ts into statements of at most
 * 500 rows and 4 MiB of SQL text each, every statement ending with the same `suffix`
 * (ON CONFLICT …, RETURNING …). Run all of them in the same transaction.
 */
import type pgPromise from 'pg-promise';
import { chunkRows, DEFAULT_STATEMENT_LIMITS, type StatementLimits } from './statement-chunks.js';
import { pgp } from './connection.js';

export function multiRowInserts<T extends object>(
  rows: readonly T[],
  columns: pgPromise.ColumnSet<T>,
  suffix: string,
  limits: StatementLimits = DEFAULT_STATEMENT_LIMITS,
): string[] {
  if (rows.length === 0) return [];
  // the same text as pgp.helpers.insert(rows, columns) when everything fits in one statement
  const head = pgp.as.format('INSERT INTO $1^($2^) VALUES', [columns.table.name, columns.names]);
  const tuples = rows.map((row) => {
    const text = pgp.helpers.values(row, columns);
    return { text, bytes: Buffer.byteLength(text, 'utf8') };
  });
  const fixedBytes = Buffer.byteLength(head, 'utf8') + Buffer.byteLength(suffix, 'utf8');
  return chunkRows(tuples, (tuple) => tuple.bytes, fixedBytes, limits).map(
    (chunk) => head + chunk.map((tuple) => tuple.text).join(',') + suffix,
  );
}
