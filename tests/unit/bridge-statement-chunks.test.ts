import { describe, expect, it } from 'vitest';
import { pgp } from '../../bridge/db/connection.js';
import { multiRowInsertStatements } from '../../bridge/db/multi-row-insert.js';
import { chunkRows, DEFAULT_STATEMENT_LIMITS } from '../../bridge/db/statement-chunks.js';

const sizes = (chunks: number[][]) => chunks.map((chunk) => chunk.length);

describe('chunkRows', () => {
  it('gives no chunk for no rows and one chunk when everything fits', () => {
    expect(chunkRows([], () => 1, 0)).toEqual([]);
    expect(chunkRows([1, 2, 3], () => 10, 5, { maxRows: 3, maxBytes: 5 + 3 * 10 + 2 })).toEqual([[1, 2, 3]]);
  });

  it('never puts more than maxRows rows in a chunk', () => {
    const rows = Array.from({ length: 1201 }, (_, i) => i);
    const chunks = chunkRows(rows, () => 1, 0, { maxRows: 500, maxBytes: 1e9 });
    expect(sizes(chunks)).toEqual([500, 500, 201]);
    expect(chunks.flat()).toEqual(rows);
  });

  it('counts the fixed bytes once per chunk and one separator between rows', () => {
    // 10 fixed + 3 rows of 10 + 2 separators = 42
    expect(sizes(chunkRows([1, 2, 3, 4], () => 10, 10, { maxRows: 100, maxBytes: 42 }))).toEqual([3, 1]);
    expect(sizes(chunkRows([1, 2, 3, 4], () => 10, 10, { maxRows: 100, maxBytes: 41 }))).toEqual([2, 2]);
  });

  it('puts a row larger than maxBytes in a chunk of its own, in order', () => {
    const rows = [1, 50, 2, 3];
    const chunks = chunkRows(rows, (row) => row, 0, { maxRows: 100, maxBytes: 10 });
    expect(chunks).toEqual([[1], [50], [2, 3]]);
  });

  it('defaults to 500 rows and 4 MiB', () => {
    expect(DEFAULT_STATEMENT_LIMITS).toEqual({ maxRows: 500, maxBytes: 4 * 1024 * 1024 });
  });
});

describe('multiRowInsertStatements', () => {
  const multiRowInserts = <T extends object>(...args: Parameters<typeof multiRowInsertStatements<T>>) => [
    ...multiRowInsertStatements(...args),
  ];
  const columns = new pgp.helpers.ColumnSet<{ id: string; note: string }>(['id', 'note'], { table: 'notes' });

  it('writes what pgp.helpers.insert writes when one statement is enough', () => {
    const rows = [
      { id: 'a', note: "it's" },
      { id: 'b', note: 'ü' },
    ];
    expect(multiRowInserts(rows, columns, ' ON CONFLICT DO NOTHING')).toEqual([
      pgp.helpers.insert(rows, columns) + ' ON CONFLICT DO NOTHING',
    ]);
    expect(multiRowInserts([], columns, '')).toEqual([]);
  });

  it('keeps every statement within the byte limit, counting UTF-8 bytes, and loses no row', () => {
    // 2000 rows of 16 KiB (two UTF-8 bytes per character): 32 MiB of SQL in one statement
    const rows = Array.from({ length: 2000 }, (_, i) => ({ id: String(i), note: 'é'.repeat(8 * 1024) }));
    const statements = multiRowInserts(rows, columns, ' RETURNING id');
    expect(statements.length).toBe(8);
    for (const sql of statements) {
      expect(Buffer.byteLength(sql, 'utf8')).toBeLessThanOrEqual(DEFAULT_STATEMENT_LIMITS.maxBytes);
      expect(sql).toMatch(/^INSERT INTO "notes"\("id","note"\) VALUES\('/);
      expect(sql.endsWith(' RETURNING id')).toBe(true);
    }
    const ids = statements.flatMap((sql) => [...sql.matchAll(/\('(\d+)',/g)].map((match) => match[1]));
    expect(ids).toEqual(rows.map((row) => row.id));
  });
  it('formats the rows of a statement only when that statement is taken', () => {
    let formatted = 0;
    const counting = new pgp.helpers.ColumnSet<{ id: string }>(
      [{ name: 'id', init: (column) => ((formatted += 1), String(column.value)) }],
      { table: 'notes' },
    );
    const rows = Array.from({ length: 1200 }, (_, i) => ({ id: String(i) }));
    const statements = multiRowInsertStatements(rows, counting, '');
    expect(formatted).toBe(0);
    expect(statements.next().done).toBe(false);
    // the first statement's 500 rows, and the one row that did not fit and starts the next
    expect(formatted).toBe(501);
    expect([...statements]).toHaveLength(2);
    expect(formatted).toBe(1200);
  });
});
