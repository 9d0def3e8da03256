/**
 * Splits the rows of one multi-row INSERT into statements of bounded size (pure).
 *
 * CockroachDB refuses any client message larger than `sql.conn.max_read_buffer_message_size`
 * (16 MiB by default: pkg/sql/pgwire/pgwirebase/encoding.go, defaultMaxReadBufferMessageSize =
 * 1 << 24; see "Cluster Settings" in the CockroachDB docs) with SQLSTATE 08P01, and pg-promise
 * sends values inline in the SQL text. A batch of 2000 readings with 16 KiB of metadata each is a
 * 30 MiB upsert, and conflict_log stores every reading's JSON three times, so every multi-row
 * INSERT of the bridge is written as several statements (in the same transaction), each with at
 * most `maxRows` rows and at most `maxBytes` bytes of SQL text. Smaller statements also keep each
 * KV batch well below CockroachDB's raft command limit.
 */

export interface StatementLimits {
  maxRows: number;
  /** bytes of SQL text (UTF-8), the statement's fixed parts included */
  maxBytes: number;
}

/** 500 rows, 4 MiB: a quarter of CockroachDB's 16 MiB message limit. */
export const DEFAULT_STATEMENT_LIMITS: StatementLimits = { maxRows: 500, maxBytes: 4 * 1024 * 1024 };

/**
 * Groups `rows` in order into chunks of at most `limits.maxRows` rows whose sizes, plus
 * `fixedBytes` once per chunk and one separator byte between rows, add up to at most
 * `limits.maxBytes`. A row too large for any chunk forms a chunk of its own (the database decides
 * whether it can take it). No chunk is empty; no rows give no chunks.
 */
export function chunkRows<T>(
  rows: readonly T[],
  sizeOf: (row: T) => number,
  fixedBytes: number,
  limits: StatementLimits = DEFAULT_STATEMENT_LIMITS,
): T[][] {
  return [...chunkRowsLazily(rows, sizeOf, fixedBytes, limits)];
}

/**
 * chunkRows as a generator over any iterable: a chunk is yielded as soon as it is complete, so a
 * caller that formats rows lazily (multi-row-insert.ts) does the work of one statement at a time.
 */
export function* chunkRowsLazily<T>(
  rows: Iterable<T>,
  sizeOf: (row: T) => number,
  fixedBytes: number,
  limits: StatementLimits = DEFAULT_STATEMENT_LIMITS,
): Generator<T[]> {
  let current: T[] = [];
  let bytes = fixedBytes;
  for (const row of rows) {
    const rowBytes = sizeOf(row);
    const fits = current.length < limits.maxRows && bytes + 1 + rowBytes <= limits.maxBytes;
    if (current.length > 0 && !fits) {
      yield current;
      current = [];
      bytes = fixedBytes;
    }
    bytes += (current.length > 0 ? 1 : 0) + rowBytes;
    current.push(row);
  }
  if (current.length > 0) yield current;
}
