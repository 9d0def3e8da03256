/**
 * How much room the edge database may take and what to do when it runs short (pure; G8).
 *
 * Size: SQLite's own numbers, not the file's length. The file never shrinks (auto_vacuum is off),
 * but pages freed by deletes go to the freelist and are reused before the file grows, so what is
 * in use is (page_count - freelist_count) × page_size, plus the WAL file, which holds committed
 * pages until a checkpoint copies them back.
 *
 * Capacity: EDGE_MAX_DB_BYTES, or what the filesystem can still give the database (the file as
 * it is plus the filesystem's free space, fs.statfs), whichever is less. So a disk filled by
 * readings, or by anything else, is seen before SQLite hits SQLITE_FULL.
 *
 * Reserve: the agent stops taking new readings a reserve below the capacity (the high-water mark),
 * so that claims and acks can always be written: a claim or an ack of 1000 readings rewrites
 * ~100 pages (table, idx_sync_status, idx_sync_batch, idx_synced_at: ~0.4 MB of WAL), and acks are
 * what frees space (synced rows can be pruned). Before, a full disk failed every claim and ack
 * with SQLITE_FULL and nothing could ever drain. The reserve is 1/16 of the capacity, at least
 * 2 MiB, at most 64 MiB. What runs while short needs WAL space on the filesystem, which the
 * database's free pages cannot give: a claim or an ack of 1000 readings, a prune of 2000 synced
 * ones (~1 MB of WAL). With at least 1 MiB, an 8 MiB filesystem deadlocked in about half the runs
 * of tests/integration/edge-storage-full.test.ts: the WAL outgrew the reserve, every ack, claim
 * and release failed with SQLITE_FULL, and 4,000-12,000 PUBACKed readings never drained; the WAL is kept within a quarter of it (wal_autocheckpoint,
 * journal_size_limit). Once full, readings are accepted again only below a low-water mark half a
 * reserve lower, so the gate does not flap with every commit and ack.
 *
 * When short: synced rows go first (already in the control plane), oldest confirmed first, even
 * before their retention ends; then the overflow policy: 'reject-new' withholds the sensors'
 * PUBACKs until space returns (they keep their readings and re-send), 'drop-oldest' deletes the
 * oldest pending readings (counted, logged, reported upstream as droppedCount).
 */

export type OverflowPolicy = 'reject-new' | 'drop-oldest';
export const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ['reject-new', 'drop-oldest'];

const MiB = 1024 * 1024;
export const DEFAULT_MAX_DB_BYTES = 1024 * MiB;
/** below this a reserve of 1 MiB would leave almost nothing for readings */
export const MIN_MAX_DB_BYTES = 4 * MiB;
const MIN_RESERVE_BYTES = 2 * MiB;
const MAX_RESERVE_BYTES = 64 * MiB;
/** SQLite's default wal_autocheckpoint */
const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 1000;

export interface StorageSample {
  pageSize: number;
  pageCount: number;
  freelistCount: number;
  /** size of the -wal file (0 when there is none) */
  walBytes: number;
  /** bytes the filesystem holding the database still gives an unprivileged writer (statfs bavail × bsize) */
  fsFreeBytes: number;
}

export interface StorageAssessment {
  /** pages in use plus the WAL */
  usedBytes: number;
  /** the database file plus the WAL */
  fileBytes: number;
  /** min(EDGE_MAX_DB_BYTES, fileBytes + fsFreeBytes) */
  capacityBytes: number;
  reserveBytes: number;
  /** new readings are taken only below this */
  highWaterBytes: number;
  /** once full, readings are taken again only below this */
  lowWaterBytes: number;
}

export function reserveFor(capacityBytes: number): number {
  return Math.min(MAX_RESERVE_BYTES, Math.max(MIN_RESERVE_BYTES, Math.floor(capacityBytes / 16)));
}

export function assessStorage(sample: StorageSample, maxDbBytes: number): StorageAssessment {
  const fileBytes = sample.pageCount * sample.pageSize + sample.walBytes;
  const usedBytes = (sample.pageCount - sample.freelistCount) * sample.pageSize + sample.walBytes;
  const capacityBytes = Math.min(maxDbBytes, fileBytes + sample.fsFreeBytes);
  const reserveBytes = reserveFor(capacityBytes);
  const highWaterBytes = capacityBytes - reserveBytes;
  return {
    usedBytes,
    fileBytes,
    capacityBytes,
    reserveBytes,
    highWaterBytes,
    lowWaterBytes: highWaterBytes - Math.floor(reserveBytes / 2),
  };
}

export interface WalLimits {
  /** PRAGMA wal_autocheckpoint (pages) */
  autocheckpointPages: number;
  /** PRAGMA journal_size_limit (bytes the WAL is truncated to after a checkpoint) */
  journalSizeLimitBytes: number;
  /** PRAGMA max_page_count: SQLITE_FULL beyond the cap, a backstop behind the high-water mark */
  maxPageCount: number;
}

/** The WAL kept within a quarter of the reserve of `capacityBytes`; SQLite's defaults for large capacities. */
export function walLimits(maxDbBytes: number, capacityBytes: number, pageSize: number): WalLimits {
  const quarter = Math.floor(reserveFor(capacityBytes) / 4);
  return {
    autocheckpointPages: Math.max(16, Math.min(DEFAULT_WAL_AUTOCHECKPOINT_PAGES, Math.floor(quarter / pageSize))),
    journalSizeLimitBytes: quarter,
    maxPageCount: Math.floor(maxDbBytes / pageSize),
  };
}

export type StorageStep = 'accept' | 'prune-synced' | 'drop-pending' | 'withhold';

export interface StorageSituation {
  /** true while relieving (or while full): aim for the low-water mark, not the high-water mark */
  relieving: boolean;
  policy: OverflowPolicy;
  /** whether synced rows may still be there to prune (false once a prune came back short) */
  syncedLeft: boolean;
  /** whether pending rows may still be there to drop */
  pendingLeft: boolean;
}

/** What to do next with the store as assessed. */
export function nextStorageStep(assessment: StorageAssessment, situation: StorageSituation): StorageStep {
  const limit = situation.relieving ? assessment.lowWaterBytes : assessment.highWaterBytes;
  if (assessment.usedBytes < limit) return 'accept';
  if (situation.syncedLeft) return 'prune-synced';
  if (situation.policy === 'drop-oldest' && situation.pendingLeft) return 'drop-pending';
  return 'withhold';
}
