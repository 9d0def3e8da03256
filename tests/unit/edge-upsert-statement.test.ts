import { describe, expect, it } from 'vitest';
import {
  buildUpsertStatements,
  maxRowsPerStatement,
  SQLITE_MAX_BOUND_PARAMETERS,
} from '../../edge/store/upsert-statement.js';
import { makeRecord, TEST_DEVICE_ID } from '../helpers/records.js';

describe('buildUpsertStatements', () => {
  it('fits as many rows in one statement as the bound-parameter limit allows (8 per row)', () => {
    expect(maxRowsPerStatement()).toBe(Math.floor(SQLITE_MAX_BOUND_PARAMETERS / 8));
    expect(maxRowsPerStatement(24)).toBe(3);
    expect(maxRowsPerStatement(5)).toBe(1);
  });

  it('builds one multi-row statement for a group that fits, none for an empty group', () => {
    const statements = buildUpsertStatements(TEST_DEVICE_ID, [makeRecord(), makeRecord(), makeRecord()]);
    expect(statements).toHaveLength(1);
    const [statement] = statements;
    expect(typeof statement === 'object' && statement.args).toHaveLength(24);
    expect(buildUpsertStatements(TEST_DEVICE_ID, [])).toEqual([]);
  });

  it('splits a larger group into chunks, keeping order', () => {
    const records = Array.from({ length: 7 }, () => makeRecord());
    const statements = buildUpsertStatements(TEST_DEVICE_ID, records, 24);
    expect(statements).toHaveLength(3);
    const firstIds = statements.map((statement) =>
      typeof statement === 'object' && Array.isArray(statement.args) ? statement.args[0] : null,
    );
    expect(firstIds).toEqual([records[0]?.id, records[3]?.id, records[6]?.id]);
  });
});
