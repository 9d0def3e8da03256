/**
 * Output of ctl (pure): aligned plain-text tables for people, one row per item, columns in a
 * fixed order; missing values as '-'. `--json` bypasses this and prints the API's body.
 */

export type Cell = string | number | boolean | null | undefined;

export function table(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((row) => headers.map((_, index) => cellText(row[index])));
  const widths = headers.map((header, index) =>
    Math.max(header.length, ...text.map((row) => (row[index] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, index) => (index === cells.length - 1 ? cell : cell.padEnd(widths[index] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...text.map(line)].join('\n');
}

/** key: value lines, keys aligned. */
export function keyValues(entries: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(0, ...entries.map(([key]) => key.length));
  return entries.map(([key, value]) => `${`${key}:`.padEnd(width + 1)}  ${cellText(value)}`).join('\n');
}

export function cellText(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}
