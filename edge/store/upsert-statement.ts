/**
 * Builds the multi-row upsert for telemetry_data (pure). One statement carries as many readings
 * as SQLite's bound-parameter limit allows; larger groups are split into several statements that
 * the store runs inside one transaction.
 *
 *   new id                          -> inserted: version 1, pending
 *   same id, identical content      -> untouched (a duplicate; the WHERE of DO UPDATE is false)
 *   same id, different content      -> a correction: version + 1, back to pending, batch cleared
 */
import type { InStatement } from '@libsql/client';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { CONTENT_COLUMNS, contentValues } from './telemetry-rows.js';

/** SQLITE_MAX_VARIABLE_NUMBER of the bundled libsql (3.45): 32766. */
export const SQLITE_MAX_BOUND_PARAMETERS = 32_766;

const PARAMETERS_PER_ROW = CONTENT_COLUMNS.length;
const ROW_PLACEHOLDERS = `(${CONTENT_COLUMNS.map(() => '?').join(', ')})`;
const CONTENT_DIFFERS =
  `(${CONTENT_COLUMNS.slice(1)
    .map((column) => `telemetry_data.${column}`)
    .join(', ')}) IS NOT ` +
  `(${CONTENT_COLUMNS.slice(1)
    .map((column) => `excluded.${column}`)
    .join(', ')})`;
const ON_CONFLICT = `ON CONFLICT(id) DO UPDATE SET
  ${CONTENT_COLUMNS.slice(1)
    .map((column) => `${column} = excluded.${column}`)
    .join(', ')},
  version = telemetry_data.version + 1,
  sync_status = 'pending',
  sync_timestamp = NULL,
  sync_batch_id = NULL,
  sync_error = NULL
WHERE ${CONTENT_DIFFERS}
RETURNING version`;

export function maxRowsPerStatement(maxParameters: number = SQLITE_MAX_BOUND_PARAMETERS): number {
  return Math.max(1, Math.floor(maxParameters / PARAMETERS_PER_ROW));
}

/** One statement per chunk of at most maxRowsPerStatement readings; none for an empty list. */
export function buildUpsertStatements(
  deviceId: string,
  records: readonly TelemetryRecord[],
  maxParameters: number = SQLITE_MAX_BOUND_PARAMETERS,
): InStatement[] {
  const rowsPerStatement = maxRowsPerStatement(maxParameters);
  const statements: InStatement[] = [];
  for (let start = 0; start < records.length; start += rowsPerStatement) {
    const chunk = records.slice(start, start + rowsPerStatement);
    statements.push({
      sql: `INSERT INTO telemetry_data (${CONTENT_COLUMNS.join(', ')}) VALUES ${chunk.map(() => ROW_PLACEHOLDERS).join(', ')}\n${ON_CONFLICT}`,
      args: chunk.flatMap((record) => contentValues(deviceId, record)),
    });
  }
  return statements;
}
