/**
 * Keyset pagination cursors (pure). A page is `{items, next}`; `next` is an opaque string the
 * client passes back as `?after=`. It encodes the sort key of the last item of the page, so a
 * page boundary is stable while rows are inserted or deleted elsewhere (no OFFSET: a row is
 * never skipped or repeated because an earlier one was added), and every page is one index range.
 * A cursor that does not decode, or was made for another list, is a 400.
 */

export class CursorError extends Error {
  override name = 'CursorError';
}

/** base64url of JSON `[list, ...key]`, so a cursor of one list is refused by another. */
export function encodeCursor(list: string, key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify([list, ...key]), 'utf8').toString('base64url');
}

export function decodeCursor(list: string, cursor: string, arity: number): (string | number)[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new CursorError(`'after' is not a cursor of this API (pass the 'next' of the previous page)`);
  }
  if (
    !Array.isArray(parsed) ||
    parsed[0] !== list ||
    parsed.length !== arity + 1 ||
    !parsed.slice(1).every((part) => typeof part === 'string' || typeof part === 'number')
  ) {
    throw new CursorError(`'after' is not a cursor of the ${list} list (pass the 'next' of the previous page)`);
  }
  return parsed.slice(1) as (string | number)[];
}

/**
 * Rows fetched with LIMIT limit + 1 → the page and its next cursor: a next cursor only when a
 * further row exists, so the last page says next: null.
 */
export function pageFrom<Row, Item>(
  rows: readonly Row[],
  limit: number,
  list: string,
  keyOf: (row: Row) => readonly (string | number)[],
  toItem: (row: Row) => Item,
): { items: Item[]; next: string | null } {
  const pageRows = rows.slice(0, limit);
  const last = pageRows.at(-1);
  const next = rows.length > limit && last !== undefined ? encodeCursor(list, keyOf(last)) : null;
  return { items: pageRows.map(toItem), next };
}
