import { describe, expect, it } from 'vitest';
import {
  assessStorage,
  nextStorageStep,
  reserveFor,
  walLimits,
  type StorageSample,
} from '../../edge/store/storage-budget.js';

const MiB = 1024 * 1024;
const sample = (overrides: Partial<StorageSample>): StorageSample => ({
  pageSize: 4096,
  pageCount: 0,
  freelistCount: 0,
  walBytes: 0,
  fsFreeBytes: 100 * 1024 * MiB,
  ...overrides,
});

describe('assessStorage', () => {
  it('counts pages in use plus the WAL, not the freelist the file keeps', () => {
    const assessment = assessStorage(sample({ pageCount: 2560, freelistCount: 512, walBytes: MiB }), 1024 * MiB);
    expect(assessment.fileBytes).toBe(11 * MiB);
    expect(assessment.usedBytes).toBe(9 * MiB);
    expect(assessment.capacityBytes).toBe(1024 * MiB);
  });

  it('takes what the filesystem has room for when that is less than the cap', () => {
    // an 8 MiB disk: a 3 MiB file and 5 MiB free, under the default 1 GiB cap
    const assessment = assessStorage(sample({ pageCount: 768, fsFreeBytes: 5 * MiB }), 1024 * MiB);
    expect(assessment.capacityBytes).toBe(8 * MiB);
    expect(assessment.reserveBytes).toBe(2 * MiB);
    expect(assessment.highWaterBytes).toBe(6 * MiB);
    expect(assessment.lowWaterBytes).toBe(5 * MiB);
  });

  it('keeps a reserve of 1/16 of the capacity, between 2 MiB and 64 MiB', () => {
    expect(reserveFor(4 * MiB)).toBe(2 * MiB);
    expect(reserveFor(8 * MiB)).toBe(2 * MiB);
    expect(reserveFor(256 * MiB)).toBe(16 * MiB);
    expect(reserveFor(1024 * MiB)).toBe(64 * MiB);
    expect(reserveFor(64 * 1024 * MiB)).toBe(64 * MiB);
  });
});

describe('walLimits', () => {
  it("keeps SQLite's defaults for a large store and a WAL within a quarter of the reserve for a small one", () => {
    expect(walLimits(1024 * MiB, 1024 * MiB, 4096)).toEqual({
      autocheckpointPages: 1000,
      journalSizeLimitBytes: 16 * MiB,
      maxPageCount: 262_144,
    });
    expect(walLimits(1024 * MiB, 8 * MiB, 4096)).toEqual({
      autocheckpointPages: 128,
      journalSizeLimitBytes: MiB / 2,
      maxPageCount: 262_144,
    });
  });
});

describe('nextStorageStep', () => {
  const assessment = (usedMiB: number) => assessStorage(sample({ pageCount: (usedMiB * MiB) / 4096 }), 64 * MiB);
  const open = { relieving: false, policy: 'reject-new' as const, syncedLeft: true, pendingLeft: true };

  it('accepts below the high-water mark, a reserve below the capacity', () => {
    expect(assessment(59.9).highWaterBytes).toBe(60 * MiB);
    expect(nextStorageStep(assessment(59.9), open)).toBe('accept');
  });

  it('prunes synced readings first when short, whatever the policy', () => {
    expect(nextStorageStep(assessment(60), open)).toBe('prune-synced');
    expect(nextStorageStep(assessment(60), { ...open, policy: 'drop-oldest' })).toBe('prune-synced');
  });

  it('then withholds (reject-new) or drops the oldest pending readings (drop-oldest)', () => {
    expect(nextStorageStep(assessment(60), { ...open, syncedLeft: false })).toBe('withhold');
    expect(nextStorageStep(assessment(60), { ...open, syncedLeft: false, policy: 'drop-oldest' })).toBe('drop-pending');
    expect(
      nextStorageStep(assessment(60), { ...open, syncedLeft: false, pendingLeft: false, policy: 'drop-oldest' }),
    ).toBe('withhold');
  });

  it('once relieving, goes on to the low-water mark half a reserve lower before accepting again', () => {
    const relieving = { ...open, relieving: true, syncedLeft: false };
    expect(nextStorageStep(assessment(58.1), relieving)).toBe('withhold');
    expect(nextStorageStep(assessment(57.9), relieving)).toBe('accept');
  });
});
