import { describe, expect, it } from 'vitest';
import {
  decide,
  RECORD_OF_ANOTHER_DEVICE,
  resolveBatch,
  type IncomingMessage,
} from '../../bridge/ingest/conflict-resolution.js';
import type { TelemetryRow } from '../../bridge/ingest/telemetry-row.js';
import { makeRow, type RecordOverrides } from '../helpers/records.js';

const DEVICE_A = '0b5e7a40-95c4-4a8e-9d4a-1f2a3b4c5d01';
const DEVICE_B = '0b5e7a40-95c4-4a8e-9d4a-1f2a3b4c5d02';
const RECORD_ID = 'a1b2c3d4-0000-4000-8000-000000000001';

/** the same reading (RECORD_ID) unless overridden */
const row = (overrides: RecordOverrides = {}, deviceId = DEVICE_A): TelemetryRow =>
  makeRow(deviceId, { id: RECORD_ID, ...overrides });

const stored = (...rows: TelemetryRow[]) => new Map(rows.map((r) => [r.id, r]));
const one = (deviceId: string, ...records: TelemetryRow[]): IncomingMessage => ({ deviceId, records });

describe('decide (one record against the current row)', () => {
  it('inserts a new id', () => {
    expect(decide(row(), undefined)).toEqual({ kind: 'insert' });
  });

  it('updates when the incoming version is higher', () => {
    expect(decide(row({ version: 2, value: 22 }), row())).toEqual({ kind: 'update' });
  });

  it('keeps the stored row when the incoming version is lower (stale)', () => {
    expect(decide(row({ version: 1 }), row({ version: 3 }))).toEqual({ kind: 'stale' });
  });

  it('treats the same version with the same content as a duplicate', () => {
    expect(decide(row(), row())).toEqual({ kind: 'duplicate' });
  });

  it('breaks a same-version tie by content hash, the same way from both sides', () => {
    const a = row({ value: 1 });
    const b = row({ value: 2 });
    const aAgainstB = decide(a, b);
    const bAgainstA = decide(b, a);
    expect(aAgainstB.kind).toBe('tie');
    expect(bAgainstA.kind).toBe('tie');
    const aWins = aAgainstB.kind === 'tie' && aAgainstB.incomingWins;
    const bWins = bAgainstA.kind === 'tie' && bAgainstA.incomingWins;
    expect(aWins).not.toBe(bWins);
    expect(aWins).toBe(a.contentHash > b.contentHash);
  });

  it('rejects a record whose id belongs to another device, whatever the version', () => {
    expect(decide(row({ version: 9 }, DEVICE_B), row())).toEqual({ kind: 'reject', reason: RECORD_OF_ANOTHER_DEVICE });
  });
});

describe('resolveBatch against stored rows', () => {
  it('upserts only what changes and counts every accepted record', () => {
    const other = row({ id: 'a1b2c3d4-0000-4000-8000-000000000002' });
    const result = resolveBatch([one(DEVICE_A, row(), other)], stored(row()));
    expect(result.upserts).toEqual([other]);
    expect(result.messages).toEqual([{ accepted: 2, rejected: [], conflicts: 0, inserted: 1 }]);
    expect(result.conflicts).toEqual([]);
  });

  it('logs a stale version with the device value as local and the stored as remote and resolved', () => {
    const newer = row({ version: 3, value: 30 });
    const older = row({ version: 2, value: 20 });
    const result = resolveBatch([one(DEVICE_A, older)], stored(newer));
    expect(result.upserts).toEqual([]);
    expect(result.messages[0]).toEqual({ accepted: 1, rejected: [], conflicts: 1, inserted: 0 });
    expect(result.conflicts).toHaveLength(1);
    expect(result.conflicts[0]).toMatchObject({
      deviceId: DEVICE_A,
      recordId: RECORD_ID,
      conflictType: 'stale-version',
      localValue: { version: 2, value: 20 },
      remoteValue: { version: 3, value: 30 },
      resolvedValue: { version: 3, value: 30 },
      resolutionStrategy: 'last-write-wins',
    });
  });

  it('applies a higher version without logging a conflict', () => {
    const update = row({ version: 2, value: 99 });
    const result = resolveBatch([one(DEVICE_A, update)], stored(row()));
    expect(result.upserts).toEqual([update]);
    expect(result.conflicts).toEqual([]);
    expect(result.messages[0]?.accepted).toBe(1);
  });

  it('ends a tie with the same row whichever reading was stored first, and logs it both ways', () => {
    const a = row({ value: 1 });
    const b = row({ value: 2 });
    const winner = a.contentHash > b.contentHash ? a : b;
    const aStored = resolveBatch([one(DEVICE_A, b)], stored(a));
    const bStored = resolveBatch([one(DEVICE_A, a)], stored(b));
    const finalRow = (upserts: TelemetryRow[], before: TelemetryRow) => upserts[0] ?? before;
    expect(finalRow(aStored.upserts, a)).toEqual(winner);
    expect(finalRow(bStored.upserts, b)).toEqual(winner);
    for (const result of [aStored, bStored]) {
      expect(result.conflicts).toHaveLength(1);
      expect(result.conflicts[0]?.conflictType).toBe('version-tie');
      expect(result.conflicts[0]?.resolvedValue.value).toBe(winner.value);
      expect(result.messages[0]).toMatchObject({ accepted: 1, conflicts: 1 });
    }
  });

  it('rejects a record of another device and keeps the rest of the message', () => {
    const foreign = row({ version: 5 }, DEVICE_B);
    const fine = row({ id: 'a1b2c3d4-0000-4000-8000-000000000003' }, DEVICE_B);
    const result = resolveBatch([one(DEVICE_B, foreign, fine)], stored(row()));
    expect(result.upserts).toEqual([fine]);
    expect(result.messages[0]).toEqual({
      accepted: 1,
      rejected: [{ id: RECORD_ID, reason: RECORD_OF_ANOTHER_DEVICE }],
      conflicts: 0,
      inserted: 1,
    });
    expect(result.conflicts).toEqual([]);
  });

  it('gives a conflict the same id every time (a redelivery logs nothing new)', () => {
    const first = resolveBatch([one(DEVICE_A, row({ version: 1 }))], stored(row({ version: 2 })));
    const again = resolveBatch([one(DEVICE_A, row({ version: 1 }))], stored(row({ version: 2 })));
    expect(first.conflicts[0]?.conflictId).toBe(again.conflicts[0]?.conflictId);
    const different = resolveBatch([one(DEVICE_A, row({ version: 1, value: 7 }))], stored(row({ version: 2 })));
    expect(different.conflicts[0]?.conflictId).not.toBe(first.conflicts[0]?.conflictId);
  });

  it('gives a tie the same id whichever of its two readings is the incoming one', () => {
    const [a, b] = [row({ value: 1 }), row({ value: 2 })];
    const bAgainstA = resolveBatch([one(DEVICE_A, b)], stored(a)).conflicts[0];
    const aAgainstB = resolveBatch([one(DEVICE_A, a)], stored(b)).conflicts[0];
    expect(bAgainstA?.conflictType).toBe('version-tie');
    expect(aAgainstB?.conflictId).toBe(bAgainstA?.conflictId);
    const third = resolveBatch([one(DEVICE_A, row({ value: 3 }))], stored(a)).conflicts[0];
    expect(third?.conflictId).not.toBe(bAgainstA?.conflictId);
  });
});

describe('resolveBatch within one database batch', () => {
  it('sends one row per id: v1 then v2 keeps v2 without a conflict', () => {
    const v1 = row({ version: 1 });
    const v2 = row({ version: 2, value: 2 });
    const result = resolveBatch([one(DEVICE_A, v1), one(DEVICE_A, v2)], stored());
    expect(result.upserts).toEqual([v2]);
    expect(result.conflicts).toEqual([]);
    expect(result.messages.map((m) => m.accepted)).toEqual([1, 1]);
    expect(result.messages.map((m) => m.inserted)).toEqual([1, 0]);
  });

  it('v2 then v1 keeps v2 and logs v1 as stale against the earlier winner', () => {
    const v1 = row({ version: 1 });
    const v2 = row({ version: 2, value: 2 });
    const result = resolveBatch([one(DEVICE_A, v2), one(DEVICE_A, v1)], stored());
    expect(result.upserts).toEqual([v2]);
    expect(result.conflicts.map((c) => c.conflictType)).toEqual(['stale-version']);
    expect(result.messages[1]).toMatchObject({ accepted: 1, conflicts: 1 });
  });

  it('the same message twice in one batch (a redelivery) is one insert and one duplicate', () => {
    const reading = row();
    const result = resolveBatch([one(DEVICE_A, reading), one(DEVICE_A, reading)], stored());
    expect(result.upserts).toEqual([reading]);
    expect(result.decisions).toEqual([[{ kind: 'insert' }], [{ kind: 'duplicate' }]]);
  });

  it('the same id inside one message is resolved like two messages', () => {
    const result = resolveBatch([one(DEVICE_A, row(), row({ version: 4, value: 4 }))], stored());
    expect(result.upserts).toHaveLength(1);
    expect(result.upserts[0]?.version).toBe(4);
    expect(result.messages[0]?.accepted).toBe(2);
  });

  it('a second device cannot take over an id first seen earlier in the same batch', () => {
    const result = resolveBatch([one(DEVICE_A, row()), one(DEVICE_B, row({ version: 2 }, DEVICE_B))], stored());
    expect(result.upserts).toHaveLength(1);
    expect(result.upserts[0]?.deviceId).toBe(DEVICE_A);
    expect(result.messages[1]?.rejected).toEqual([{ id: RECORD_ID, reason: RECORD_OF_ANOTHER_DEVICE }]);
  });
});

describe('last-write-wins is order-independent', () => {
  const candidates = [
    row({ version: 1, value: 1 }),
    row({ version: 2, value: 2 }),
    row({ version: 2, value: 3 }),
    row({ version: 2, value: 3, unit: 'F' }),
    row({ version: 1, value: 5, metadata: { b: 1, a: [1, 2] } }),
  ];

  function permutations<T>(items: T[]): T[][] {
    if (items.length <= 1) return [items];
    return items.flatMap((item, index) =>
      permutations([...items.slice(0, index), ...items.slice(index + 1)]).map((rest) => [item, ...rest]),
    );
  }

  it('every arrival order, in one batch or one batch per reading, ends with the same row', () => {
    const expected = [...candidates]
      .sort((x, y) => x.version - y.version || (x.contentHash < y.contentHash ? -1 : 1))
      .at(-1);
    for (const order of permutations(candidates)) {
      const inOneBatch = resolveBatch(
        order.map((r) => one(DEVICE_A, r)),
        stored(),
      );
      expect(inOneBatch.upserts).toEqual([expected]);

      let current = new Map<string, TelemetryRow>();
      for (const reading of order) {
        const step = resolveBatch([one(DEVICE_A, reading)], current);
        for (const upsert of step.upserts) current = new Map([[upsert.id, upsert]]);
      }
      expect(current.get(RECORD_ID)).toEqual(expected);
    }
  });
});
