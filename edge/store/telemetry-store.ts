/**
 * Everything the edge agent does with its libSQL database: readings in (one multi-row upsert per
 * group commit), batches out (claim, ack, release), the sync log and rejected readings. SQL lives
 * here; decisions (which readings fit a batch) come from pure modules.
 *
 * Sync states of telemetry_data.sync_status: pending -> syncing (claimed into a batch) -> synced
 * (the bridge's sync/ack named the batch) | failed (the bridge rejected the reading, or it can
 * never fit a batch). A correction of a reading sends it back to pending from any state.
 *
 * Every statement on the claim/ack path names its index (INDEXED BY, see SYNC_PATH_STATEMENTS),
 * so that a claim costs O(batch) however large the backlog: SQLite 3.45 (bundled with
 * @libsql/client 0.18) picks idx_sync_status(sync_status, timestamp) over the partial index
 * idx_released_batches for "pending AND sync_batch_id IS NOT NULL ORDER BY timestamp LIMIT 1"
 * and walks every pending row (83 ms at 1M pending, 498 ms at 2M; 0.26 ms with the partial
 * index). tests/unit/edge-store-query-plans.test.ts checks each plan on a 1M-row backlog.
 */
import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Client, InStatement, ResultSet, Transaction } from '@libsql/client';
import { newId } from '../../common/ids.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { SyncAck, TelemetryRecord } from '../../schemas/messages.js';
import { envelopeBytes, planBatch, recordBytes } from './batch-planner.js';
import { inWriteTransaction, openEdgeDatabase, type EdgeDatabase, type EdgeDatabaseOptions } from './database.js';
import type { StorageSample } from './storage-budget.js';
import { syncLogEntryForAck } from './ack-outcome.js';
import { RECORD_COLUMNS, recordFromRow } from './telemetry-rows.js';
import { buildUpsertStatements } from './upsert-statement.js';

export type SyncStatus = 'pending' | 'syncing' | 'synced' | 'failed';

export type StatusCounts = Record<SyncStatus, number>;

export interface InsertOutcome {
  /** readings with a new id (version 1) */
  inserted: number;
  /** readings whose id existed with other content (version + 1, pending again) */
  corrected: number;
  /** readings identical to the stored row (nothing changed) */
  duplicates: number;
}

export interface AckOutcome {
  /** rows of the batch now 'synced' */
  synced: number;
  /** rows of the batch now 'failed' because the bridge rejected them */
  failed: number;
  /**
   * rows of the batch put back to 'pending' instead of confirmed: the ack said "retry later"
   * (retryAfterMs), or it listed fewer rejections than it counted (rejectedCount); absent when 0
   */
  released?: number;
}

export interface ReleaseLog {
  startedAtMs: number;
  completedAtMs: number;
  recordsCount: number;
  /** e.g. "no sync/ack within 30000 ms for batch …"; "; N readings back to pending, …" is appended */
  reason: string;
}

export interface ApplyAckOptions {
  deleteSynced?: boolean;
  log?: { startedAtMs: number; evenIfNothingMatched: boolean };
}

export interface SyncLogEntry {
  syncType: 'upstream' | 'downstream';
  /** epoch ms */
  startedAt: number;
  /** epoch ms */
  completedAt: number | null;
  recordsCount: number;
  status: 'success' | 'partial' | 'failed';
  errorMessage?: string | null;
}

export interface RejectedReadingEntry {
  /** epoch ms */
  receivedAt: number;
  topic: string;
  /** a Buffer arrives in the store worker as a plain Uint8Array (structured clone) */
  payload: Uint8Array | string;
  reason: string;
}

export interface HistoryCutoffs {
  /** synced readings confirmed before this (epoch ms) may go */
  syncedBefore: number;
  /** failed readings, sync_log entries and rejected payloads older than this may go */
  diagnosticsBefore: number;
}

export interface PrunedRows {
  synced: number;
  failed: number;
  syncLog: number;
  rejectedReadings: number;
}

/** G8: how much of refused sensor input is kept for diagnosis; the oldest goes first beyond either bound. */
export interface RejectedReadingsLimits {
  maxRows: number;
  /** payload bytes over all kept rows; at least MAX_SENSOR_PAYLOAD_BYTES */
  maxBytes: number;
}

/** 1000 payloads and 2 MiB: 2000 invalid 16 KiB readings used to grow the file by 35 MB */
export const DEFAULT_REJECTED_READINGS_LIMITS: RejectedReadingsLimits = { maxRows: 1000, maxBytes: 2 * 1024 * 1024 };

/** What was dropped to keep the stores bounded, since the database was created (edge_counters). */
export interface EdgeCounters {
  /** pending readings dropped by EDGE_OVERFLOW_POLICY=drop-oldest: never sent to the control plane */
  droppedPendingReadings: number;
  /** refused sensor payloads dropped beyond RejectedReadingsLimits */
  droppedRejectedReadings: number;
}

const COUNTER_NAMES: Readonly<Record<keyof EdgeCounters, string>> = {
  droppedPendingReadings: 'dropped_pending_readings',
  droppedRejectedReadings: 'dropped_rejected_readings',
};

const REJECTED_STATEMENTS = {
  insert:
    'INSERT INTO rejected_readings (id, received_at, topic, payload, reason, payload_bytes) VALUES (?, ?, ?, ?, ?, ?)',
  totals: 'SELECT count(*) AS n, total(payload_bytes) AS bytes FROM rejected_readings',
  dropOldest: `DELETE FROM rejected_readings WHERE rowid IN (
      SELECT rowid FROM rejected_readings INDEXED BY idx_rejected_received ORDER BY received_at LIMIT ?)
    RETURNING payload_bytes`,
} as const;

async function addToCounter(transaction: Transaction, counter: keyof EdgeCounters, amount: number): Promise<void> {
  await transaction.execute({
    sql: `INSERT INTO edge_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value`,
    args: [COUNTER_NAMES[counter], amount],
  });
}

export interface OpenTelemetryStoreOptions extends EdgeDatabaseOptions {
  url: string;
  deviceId: string;
  /** the released-batch lookup without its index pinned: for scripts/bench-drain.ts's before/after only */
  legacyClaimPlan?: boolean;
  /** default DEFAULT_REJECTED_READINGS_LIMITS */
  rejectedReadings?: RejectedReadingsLimits;
}

const SYNC_STATUSES: readonly SyncStatus[] = ['pending', 'syncing', 'synced', 'failed'];

const placeholders = (count: number): string => Array.from({ length: count }, () => '?').join(', ');

/**
 * The claim/ack/release/count statements, each pinned with INDEXED BY to the index that matches
 * it (a plan the planner cannot get wrong whatever the table holds). Rows picked by a SELECT are
 * updated by rowid. Ties in timestamp go by rowid (arrival order), which idx_sync_status already
 * holds, so the oldest-pending query needs no sort at all.
 */
export const SYNC_PATH_STATEMENTS = {
  /** the oldest batch released back to pending (ack timeout, restart): the partial index holds only those rows */
  oldestReleasedBatch: `SELECT sync_batch_id FROM telemetry_data INDEXED BY idx_released_batches
    WHERE sync_status = 'pending' AND sync_batch_id IS NOT NULL ORDER BY timestamp LIMIT 1`,
  /** that batch's rows (at most one batch: sorted in a small temporary b-tree) */
  releasedBatchRows: `SELECT rowid, ${RECORD_COLUMNS} FROM telemetry_data INDEXED BY idx_sync_batch
    WHERE sync_batch_id = ? AND sync_status = 'pending' ORDER BY timestamp, rowid`,
  /** the oldest pending readings, in index order */
  oldestPending: `SELECT rowid, ${RECORD_COLUMNS} FROM telemetry_data INDEXED BY idx_sync_status
    WHERE sync_status = 'pending' ORDER BY timestamp, rowid LIMIT ?`,
  markSyncing: (rows: number) =>
    `UPDATE telemetry_data SET sync_status = 'syncing', sync_batch_id = ?, sync_error = NULL WHERE rowid IN (${placeholders(rows)})`,
  clearBatchId: (rows: number) =>
    `UPDATE telemetry_data SET sync_batch_id = NULL WHERE rowid IN (${placeholders(rows)})`,
  failOversized: `UPDATE telemetry_data SET sync_status = 'failed', sync_error = ?, sync_timestamp = ? WHERE rowid = ?`,
  /** a reading the bridge rejected: by its id (the primary key's index) */
  ackRejected: `UPDATE telemetry_data INDEXED BY sqlite_autoindex_telemetry_data_1
    SET sync_status = 'failed', sync_error = ?, sync_timestamp = ?
    WHERE id = ? AND sync_batch_id = ? AND sync_status IN ('syncing', 'pending')`,
  // G2: the only statement that marks readings 'synced': the bridge's sync/ack for their batch
  ackSynced: `UPDATE telemetry_data INDEXED BY idx_sync_batch SET sync_status = 'synced', sync_timestamp = ?, sync_error = NULL
    WHERE sync_batch_id = ? AND sync_status IN ('syncing', 'pending')`,
  /**
   * G2 + G8: the same rows as ackSynced, deleted instead of kept as 'synced' while storage is short:
   * they are in the control plane, and marking them would grow the table and idx_synced_at
   */
  ackDeleted: `DELETE FROM telemetry_data INDEXED BY idx_sync_batch
    WHERE sync_batch_id = ? AND sync_status IN ('syncing', 'pending')`,
  releaseBatch: `UPDATE telemetry_data INDEXED BY idx_sync_batch SET sync_status = 'pending'
    WHERE sync_batch_id = ? AND sync_status = 'syncing'`,
  releaseAllSyncing: `UPDATE telemetry_data INDEXED BY idx_sync_status SET sync_status = 'pending' WHERE sync_status = 'syncing'`,
  hasPending: `SELECT 1 FROM telemetry_data INDEXED BY idx_sync_status WHERE sync_status = 'pending' LIMIT 1`,
  /**
   * G8: space is short: the oldest synced readings go first, whatever their retention. Through
   * idx_sync_status, by reading time: with ANALYZE statistics SQLite 3.45 scans all of the partial
   * idx_synced_at and sorts it for ORDER BY sync_timestamp (the query-plan test caught it).
   */
  pruneOldestSynced: `DELETE FROM telemetry_data WHERE rowid IN (
    SELECT rowid FROM telemetry_data INDEXED BY idx_sync_status WHERE sync_status = 'synced' ORDER BY timestamp, rowid LIMIT ?)`,
  /** G8: EDGE_OVERFLOW_POLICY=drop-oldest: the oldest pending readings */
  dropOldestPending: `DELETE FROM telemetry_data WHERE rowid IN (
    SELECT rowid FROM telemetry_data INDEXED BY idx_sync_status WHERE sync_status = 'pending' ORDER BY timestamp, rowid LIMIT ?)`,
  /** O(rows of that status), through the covering index, never the table */
  countStatus: `SELECT count(*) AS n FROM telemetry_data INDEXED BY idx_sync_status WHERE sync_status = ?`,
} as const;

/**
 * The released-batch lookup as it was before the index was pinned, for scripts/bench-drain.ts's
 * before/after comparison only (TelemetryStoreOptions.legacyClaimPlan).
 */
export const LEGACY_OLDEST_RELEASED_BATCH = `SELECT sync_batch_id FROM telemetry_data
  WHERE sync_status = 'pending' AND sync_batch_id IS NOT NULL ORDER BY timestamp LIMIT 1`;

/**
 * pruneHistory's statements (args: cutoff, limit). Each finds its rows through an index on the
 * cutoff column, so a chunk costs its limit, not a scan of everything kept (which, repeated for
 * every chunk, would hold up sensor commits for seconds).
 */
export const PRUNE_STATEMENTS: Readonly<Record<keyof PrunedRows, string>> = {
  synced: `DELETE FROM telemetry_data WHERE id IN (
             SELECT id FROM telemetry_data WHERE sync_status = 'synced' AND sync_timestamp < ? LIMIT ?)`,
  failed: `DELETE FROM telemetry_data WHERE id IN (
             SELECT id FROM telemetry_data WHERE sync_status = 'failed' AND sync_timestamp < ? LIMIT ?)`,
  syncLog: 'DELETE FROM sync_log WHERE id IN (SELECT id FROM sync_log WHERE started_at < ? LIMIT ?)',
  rejectedReadings:
    'DELETE FROM rejected_readings WHERE id IN (SELECT id FROM rejected_readings WHERE received_at < ? LIMIT ?)',
};

async function insertSyncLog(executor: Client | Transaction, entry: SyncLogEntry): Promise<string> {
  const id = newId();
  await executor.execute({
    sql: `INSERT INTO sync_log (id, sync_type, started_at, completed_at, records_count, status, error_message)
          VALUES (?, ?, ?, ?, ?, ?, ?)`,
    args: [
      id,
      entry.syncType,
      entry.startedAt,
      entry.completedAt,
      entry.recordsCount,
      entry.status,
      entry.errorMessage ?? null,
    ],
  });
  return id;
}

async function readRejectedTotals(transaction: Transaction): Promise<{ rows: number; bytes: number }> {
  const result = await transaction.execute(REJECTED_STATEMENTS.totals);
  return { rows: Number(result.rows[0]?.['n'] ?? 0), bytes: Number(result.rows[0]?.['bytes'] ?? 0) };
}

interface ClaimLimits {
  maxRecords: number;
  maxBytes: number;
}

export interface ClaimedBatch {
  batchId: string;
  records: TelemetryRecord[];
}

interface Candidate {
  rowid: number;
  record: TelemetryRecord;
}

function candidatesFrom(result: ResultSet): Candidate[] {
  return result.rows.map((row) => ({ rowid: Number(row['rowid']), record: recordFromRow(row) }));
}

// G5: a reading too large for any batch fails alone instead of blocking the ones behind it
/** Marks readings that no batch of maxBytes can carry 'failed', with the reason. */
async function failOversized(
  transaction: Transaction,
  candidates: readonly Candidate[],
  sizes: readonly number[],
  oversized: readonly number[],
  maxBytes: number,
): Promise<void> {
  for (const index of oversized) {
    await transaction.execute({
      sql: SYNC_PATH_STATEMENTS.failOversized,
      args: [
        `reading is ${sizes[index]} bytes of JSON; no telemetry batch of at most ${maxBytes} bytes can carry it`,
        Date.now(),
        candidates[index]?.rowid ?? -1,
      ],
    });
  }
}

async function markSyncing(transaction: Transaction, selected: readonly Candidate[], batchId: string): Promise<void> {
  await transaction.execute({
    sql: SYNC_PATH_STATEMENTS.markSyncing(selected.length),
    args: [batchId, ...selected.map((candidate) => candidate.rowid)],
  });
}

async function claimOldestPending(
  transaction: Transaction,
  limits: ClaimLimits,
  batchId: string,
): Promise<TelemetryRecord[]> {
  const envelope = envelopeBytes(batchId);
  for (;;) {
    const candidates = candidatesFrom(
      await transaction.execute({ sql: SYNC_PATH_STATEMENTS.oldestPending, args: [limits.maxRecords] }),
    );
    const sizes = candidates.map((candidate) => recordBytes(candidate.record));
    const plan = planBatch(sizes, limits, envelope);
    await failOversized(transaction, candidates, sizes, plan.oversized, limits.maxBytes);
    const selected = plan.selected.map((index) => candidates[index] as Candidate);
    if (selected.length > 0) {
      await markSyncing(transaction, selected, batchId);
      return selected.map((candidate) => candidate.record);
    }
    if (plan.oversized.length === 0) return [];
    // every candidate was oversized and is now failed: look at the next ones
  }
}

/**
 * Claims again the oldest batch whose readings went back to 'pending' with their batch id (ack
 * timeout, restart), under that id. Readings of it that no longer fit the limits (they changed
 * since) lose the batch id and are sent later in a new batch. null when there is none.
 */
async function reclaimReleasedBatch(
  transaction: Transaction,
  limits: ClaimLimits,
  oldestReleasedBatch: string,
): Promise<ClaimedBatch | null> {
  for (;;) {
    const oldest = await transaction.execute(oldestReleasedBatch);
    const batchId = oldest.rows[0]?.['sync_batch_id'];
    if (typeof batchId !== 'string') return null;
    const candidates = candidatesFrom(
      await transaction.execute({ sql: SYNC_PATH_STATEMENTS.releasedBatchRows, args: [batchId] }),
    );
    const sizes = candidates.map((candidate) => recordBytes(candidate.record));
    const plan = planBatch(sizes, limits, envelopeBytes(batchId));
    await failOversized(transaction, candidates, sizes, plan.oversized, limits.maxBytes);
    const selected = plan.selected.map((index) => candidates[index] as Candidate);
    const chosen = new Set(plan.selected);
    const leftOver = candidates.filter((_candidate, index) => !chosen.has(index) && !plan.oversized.includes(index));
    if (leftOver.length > 0) {
      await transaction.execute({
        sql: SYNC_PATH_STATEMENTS.clearBatchId(leftOver.length),
        args: leftOver.map((candidate) => candidate.rowid),
      });
    }
    if (selected.length > 0) {
      await markSyncing(transaction, selected, batchId);
      return { batchId, records: selected.map((candidate) => candidate.record) };
    }
    // nothing of that batch can go out any more: look at the next released batch
  }
}

/**
 * The store's operations. Two implementations: SqlTelemetryStore runs them on the calling thread
 * (tests, scripts, and inside the store worker); edge/store/worker-store.ts forwards each call
 * to a worker thread that owns a SqlTelemetryStore, so that SQLite never runs on the event loop
 * that answers the sensors.
 */
export interface TelemetryStore {
  readonly deviceId: string;
  insertReadings(records: readonly TelemetryRecord[]): Promise<InsertOutcome>;
  claimPendingBatch(maxRecords: number, maxBytes: number, batchId: string): Promise<TelemetryRecord[]>;
  claimNextBatch(maxRecords: number, maxBytes: number, newBatchId: string): Promise<ClaimedBatch>;
  /**
   * `deleteSynced` (storage short, G8): the confirmed rows are deleted instead of marked synced.
   * `log`: a sync_log entry for the ack in the same transaction (always, or only when it matched rows).
   */
  applyAck(ack: SyncAck, syncedAtMs?: number, options?: ApplyAckOptions): Promise<AckOutcome>;
  /** `log`: a failed sync_log entry for the timeout in the same transaction, its message ending in how many went back */
  releaseBatch(batchId: string, log?: ReleaseLog): Promise<number>;
  releaseAllSyncing(): Promise<number>;
  countByStatus(): Promise<StatusCounts>;
  hasPending(): Promise<boolean>;
  countPending(): Promise<number>;
  countRejectedReadings(): Promise<number>;
  writeSyncLog(entry: SyncLogEntry): Promise<string>;
  recordRejectedReading(entry: RejectedReadingEntry): Promise<string>;
  pruneHistory(cutoffs: HistoryCutoffs, limit: number): Promise<PrunedRows>;
  readCounters(): Promise<EdgeCounters>;
  /** G8: the numbers storage-budget.ts decides by (PRAGMAs, the WAL's size, the filesystem's free space) */
  storageSample(): Promise<StorageSample>;
  /** G8: deletes up to `limit` synced readings, oldest first; returns how many */
  pruneSyncedForSpace(limit: number): Promise<number>;
  /** G8: deletes up to `limit` pending readings, oldest first, and counts them; returns how many and the total ever dropped */
  dropOldestPending(limit: number): Promise<{ dropped: number; total: number }>;
  /** Waits for queued operations, then closes the database. Idempotent. */
  close(): Promise<void>;
}

/** The operations a worker-backed store forwards (every method of TelemetryStore but close). */
export const STORE_OPERATIONS = [
  'insertReadings',
  'claimPendingBatch',
  'claimNextBatch',
  'applyAck',
  'releaseBatch',
  'releaseAllSyncing',
  'countByStatus',
  'hasPending',
  'countPending',
  'countRejectedReadings',
  'writeSyncLog',
  'recordRejectedReading',
  'pruneHistory',
  'readCounters',
  'storageSample',
  'pruneSyncedForSpace',
  'dropOldestPending',
] as const satisfies readonly Exclude<keyof TelemetryStore, 'deviceId' | 'close'>[];

export type StoreOperation = (typeof STORE_OPERATIONS)[number];

export class SqlTelemetryStore implements TelemetryStore {
  readonly #db: EdgeDatabase;
  readonly deviceId: string;
  readonly #oldestReleasedBatch: string;
  readonly #rejectedLimits: RejectedReadingsLimits;
  /** rows and payload bytes of rejected_readings, known after the first insert (null: count again) */
  #rejectedTotals: { rows: number; bytes: number } | null = null;

  constructor(
    db: EdgeDatabase,
    deviceId: string,
    options: { legacyClaimPlan?: boolean; rejectedReadings?: RejectedReadingsLimits } = {},
  ) {
    this.#db = db;
    this.deviceId = deviceId;
    this.#rejectedLimits = options.rejectedReadings ?? DEFAULT_REJECTED_READINGS_LIMITS;
    this.#oldestReleasedBatch = options.legacyClaimPlan
      ? LEGACY_OLDEST_RELEASED_BATCH
      : SYNC_PATH_STATEMENTS.oldestReleasedBatch;
  }

  /**
   * Stores readings in one transaction: a single multi-row upsert, or several when the group is
   * larger than SQLite's bound-parameter limit allows in one statement.
   */
  insertReadings(records: readonly TelemetryRecord[]): Promise<InsertOutcome> {
    const statements = buildUpsertStatements(this.deviceId, records);
    return this.#db.exclusive(async (client) => {
      if (statements.length === 0) return { inserted: 0, corrected: 0, duplicates: 0 };
      const results: ResultSet[] =
        statements.length === 1
          ? [await client.execute(statements[0] as InStatement)]
          : await inWriteTransaction(client, async (transaction) => {
              const all: ResultSet[] = [];
              for (const statement of statements) all.push(await transaction.execute(statement));
              return all;
            });
      let inserted = 0;
      let corrected = 0;
      for (const result of results) {
        for (const row of result.rows) {
          if (Number(row['version']) === 1) inserted += 1;
          else corrected += 1;
        }
      }
      return { inserted, corrected, duplicates: records.length - inserted - corrected };
    });
  }

  /**
   * Marks the oldest pending readings (by timestamp, then id) 'syncing' in batch `batchId` and
   * returns them, within maxRecords and maxBytes of batch JSON. Readings that can never fit a
   * batch become 'failed'. Returns [] when nothing is pending.
   */
  claimPendingBatch(maxRecords: number, maxBytes: number, batchId: string): Promise<TelemetryRecord[]> {
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, (transaction) => claimOldestPending(transaction, { maxRecords, maxBytes }, batchId)),
    );
  }

  /**
   * The next batch to send. A batch released after an ack timeout (or at start-up) goes out
   * again first, under its own batch id, so that a sync/ack for it that arrives late still
   * confirms it; otherwise the oldest pending readings form a new batch `newBatchId`.
   * `records` is empty when nothing is pending.
   */
  claimNextBatch(maxRecords: number, maxBytes: number, newBatchId: string): Promise<ClaimedBatch> {
    const limits = { maxRecords, maxBytes };
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        const released = await reclaimReleasedBatch(transaction, limits, this.#oldestReleasedBatch);
        if (released !== null) return released;
        return { batchId: newBatchId, records: await claimOldestPending(transaction, limits, newBatchId) };
      }),
    );
  }

  /**
   * Applies the bridge's sync/ack for one batch: its rows (WHERE sync_batch_id = batchId, so a
   * reading corrected since it was sent is not touched) become 'synced', except the rejected ones,
   * which become 'failed' with the bridge's reason. Rows released back to 'pending' after an ack
   * timeout still carry the batch id and are confirmed by a late ack too; an ack for a batch that
   * matches nothing changes nothing.
   *
   * Two acks confirm nothing (G2), whatever `deleteSynced` says:
   *   - "retry later" (retryAfterMs): the bridge stored nothing; the batch's 'syncing' rows go back
   *     to 'pending' under their batch id, nothing is failed and no sync_log entry is written;
   *   - an ack listing fewer rejections than its rejectedCount: the listed ones become 'failed', and
   *     the rest cannot be told apart (stored, or rejected without being named), so they go back to
   *     'pending' to be sent again; the bridge answers the re-send (duplicates, G4) with the rest.
   * Deleting or marking them instead would lose readings the bridge never stored (with storage short,
   * ackDeleted would remove them for good).
   */
  applyAck(ack: SyncAck, syncedAtMs: number = Date.now(), options: ApplyAckOptions = {}): Promise<AckOutcome> {
    const batchId = ack.batchId;
    if (batchId === null) return Promise.resolve({ synced: 0, failed: 0 });
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        if (ack.retryAfterMs !== undefined) {
          // G2 + G7: "retry later": nothing of the batch is in the control plane
          const released = await transaction.execute({ sql: SYNC_PATH_STATEMENTS.releaseBatch, args: [batchId] });
          return { synced: 0, failed: 0, released: released.rowsAffected };
        }
        let failed = 0;
        for (const rejection of ack.rejected) {
          const result = await transaction.execute({
            sql: SYNC_PATH_STATEMENTS.ackRejected,
            args: [rejection.reason, syncedAtMs, rejection.id, batchId],
          });
          failed += result.rowsAffected;
        }
        let outcome: AckOutcome;
        if ((ack.rejectedCount ?? 0) > ack.rejected.length) {
          // G2: some rejected readings are not named: none of the others is confirmed blindly
          const released = await transaction.execute({ sql: SYNC_PATH_STATEMENTS.releaseBatch, args: [batchId] });
          outcome = { synced: 0, failed, released: released.rowsAffected };
        } else {
          // G2: the only statements that confirm readings: the bridge's sync/ack for their batch
          const synced = options.deleteSynced
            ? await transaction.execute({ sql: SYNC_PATH_STATEMENTS.ackDeleted, args: [batchId] })
            : await transaction.execute({ sql: SYNC_PATH_STATEMENTS.ackSynced, args: [syncedAtMs, batchId] });
          outcome = { synced: synced.rowsAffected, failed };
        }
        const log = options.log;
        if (
          log !== undefined &&
          (log.evenIfNothingMatched || outcome.synced + outcome.failed + (outcome.released ?? 0) > 0)
        ) {
          // in the ack's transaction: the log never lags behind (or misses) the readings it describes
          await insertSyncLog(transaction, syncLogEntryForAck(ack, outcome, log.startedAtMs, syncedAtMs));
        }
        return outcome;
      }),
    );
  }

  /** Puts a batch's 'syncing' rows back to 'pending' (no ack in time); returns how many. */
  releaseBatch(batchId: string, log?: ReleaseLog): Promise<number> {
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        const result = await transaction.execute({ sql: SYNC_PATH_STATEMENTS.releaseBatch, args: [batchId] });
        if (log !== undefined) {
          await insertSyncLog(transaction, {
            syncType: 'upstream',
            startedAt: log.startedAtMs,
            completedAt: log.completedAtMs,
            recordsCount: log.recordsCount,
            status: 'failed',
            errorMessage: `${log.reason}; ${result.rowsAffected} readings back to pending, to be sent again in the same batch`,
          });
        }
        return result.rowsAffected;
      }),
    );
  }

  /** Puts every 'syncing' row back to 'pending' (at start-up: no batch is in flight yet). */
  releaseAllSyncing(): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(SYNC_PATH_STATEMENTS.releaseAllSyncing);
      return result.rowsAffected;
    });
  }

  /** One covering-index count per status (O(rows), for stats and tests; not on the send path). */
  countByStatus(): Promise<StatusCounts> {
    return this.#db.exclusive(async (client) => {
      const counts: StatusCounts = { pending: 0, syncing: 0, synced: 0, failed: 0 };
      for (const status of SYNC_STATUSES) {
        const result = await client.execute({ sql: SYNC_PATH_STATEMENTS.countStatus, args: [status] });
        counts[status] = Number(result.rows[0]?.['n'] ?? 0);
      }
      return counts;
    });
  }

  /** Whether any reading is pending: one index probe, unlike countPending. */
  hasPending(): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(SYNC_PATH_STATEMENTS.hasPending);
      return result.rows.length > 0;
    });
  }

  countPending(): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({ sql: SYNC_PATH_STATEMENTS.countStatus, args: ['pending'] });
      return Number(result.rows[0]?.['n'] ?? 0);
    });
  }

  countRejectedReadings(): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute('SELECT count(*) AS n FROM rejected_readings');
      return Number(result.rows[0]?.['n'] ?? 0);
    });
  }

  /** Appends to sync_log; returns the entry's id. */
  writeSyncLog(entry: SyncLogEntry): Promise<string> {
    return this.#db.exclusive((client) => insertSyncLog(client, entry));
  }

  // G8: rejected_readings is bounded in rows and bytes; the oldest payloads go first, counted
  /**
   * Keeps a refused sensor payload (as text, at most MAX_SENSOR_PAYLOAD_BYTES of it) and why, and
   * drops the oldest kept payloads beyond the limits in the same transaction (counted in
   * edge_counters.dropped_rejected_readings).
   */
  recordRejectedReading(entry: RejectedReadingEntry): Promise<string> {
    const id = newId();
    const bytes =
      typeof entry.payload === 'string'
        ? Buffer.from(entry.payload, 'utf8')
        : Buffer.from(entry.payload.buffer, entry.payload.byteOffset, entry.payload.byteLength);
    const kept = bytes.subarray(0, MAX_SENSOR_PAYLOAD_BYTES);
    const text = kept.toString('utf8');
    const size = Buffer.byteLength(text, 'utf8');
    const limits = this.#rejectedLimits;
    return this.#db.exclusive(async (client) => {
      try {
        this.#rejectedTotals = await inWriteTransaction(client, async (transaction) => {
          const totals = this.#rejectedTotals ?? (await readRejectedTotals(transaction));
          await transaction.execute({
            sql: REJECTED_STATEMENTS.insert,
            args: [id, entry.receivedAt, entry.topic, text, entry.reason, size],
          });
          let rows = totals.rows + 1;
          let total = totals.bytes + size;
          let dropped = 0;
          while (rows > limits.maxRows || total > limits.maxBytes) {
            const excess = Math.max(
              rows - limits.maxRows,
              Math.ceil((total - limits.maxBytes) / MAX_SENSOR_PAYLOAD_BYTES),
              1,
            );
            const deleted = await transaction.execute({ sql: REJECTED_STATEMENTS.dropOldest, args: [excess] });
            if (deleted.rows.length === 0) break;
            rows -= deleted.rows.length;
            dropped += deleted.rows.length;
            for (const row of deleted.rows) total -= Number(row['payload_bytes']);
          }
          if (dropped > 0) await addToCounter(transaction, 'droppedRejectedReadings', dropped);
          return { rows, bytes: total };
        });
      } catch (error) {
        this.#rejectedTotals = null; // rolled back: count again next time
        throw error;
      }
      return id;
    });
  }

  storageSample(): Promise<StorageSample> {
    const filePath = this.#db.filePath;
    return this.#db.exclusive(async (client) => {
      const pragma = async (name: string) => Number((await client.execute(`PRAGMA ${name}`)).rows[0]?.[name] ?? 0);
      const sample: StorageSample = {
        pageSize: await pragma('page_size'),
        pageCount: await pragma('page_count'),
        freelistCount: await pragma('freelist_count'),
        walBytes: 0,
        fsFreeBytes: Number.MAX_SAFE_INTEGER,
      };
      if (filePath !== null) {
        sample.walBytes = statSync(`${filePath}-wal`, { throwIfNoEntry: false })?.size ?? 0;
        const fs = statfsSync(dirname(filePath));
        sample.fsFreeBytes = fs.bavail * fs.bsize;
      }
      return sample;
    });
  }

  pruneSyncedForSpace(limit: number): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({ sql: SYNC_PATH_STATEMENTS.pruneOldestSynced, args: [limit] });
      return result.rowsAffected;
    });
  }

  // G8: drop-oldest: the oldest pending readings make room, counted in the same transaction
  dropOldestPending(limit: number): Promise<{ dropped: number; total: number }> {
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        const deleted = await transaction.execute({ sql: SYNC_PATH_STATEMENTS.dropOldestPending, args: [limit] });
        if (deleted.rowsAffected > 0) await addToCounter(transaction, 'droppedPendingReadings', deleted.rowsAffected);
        const total = await transaction.execute({
          sql: 'SELECT value FROM edge_counters WHERE name = ?',
          args: [COUNTER_NAMES.droppedPendingReadings],
        });
        return { dropped: deleted.rowsAffected, total: Number(total.rows[0]?.['value'] ?? 0) };
      }),
    );
  }

  readCounters(): Promise<EdgeCounters> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute('SELECT name, value FROM edge_counters');
      const values = new Map(result.rows.map((row) => [row['name'], Number(row['value'])]));
      return {
        droppedPendingReadings: values.get(COUNTER_NAMES.droppedPendingReadings) ?? 0,
        droppedRejectedReadings: values.get(COUNTER_NAMES.droppedRejectedReadings) ?? 0,
      };
    });
  }

  /**
   * Deletes at most `limit` rows of local history older than the cutoffs (epoch ms): readings
   * the bridge confirmed ('synced', by sync_timestamp), readings it rejected ('failed'), sync_log
   * entries and rejected sensor payloads. Never touches 'pending' or 'syncing' readings: those
   * are not in the control plane yet. Returns how many rows went, per table.
   */
  pruneHistory(cutoffs: HistoryCutoffs, limit: number): Promise<PrunedRows> {
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        const synced = await transaction.execute({ sql: PRUNE_STATEMENTS.synced, args: [cutoffs.syncedBefore, limit] });
        const failed = await transaction.execute({
          sql: PRUNE_STATEMENTS.failed,
          args: [cutoffs.diagnosticsBefore, limit],
        });
        const syncLog = await transaction.execute({
          sql: PRUNE_STATEMENTS.syncLog,
          args: [cutoffs.diagnosticsBefore, limit],
        });
        const rejected = await transaction.execute({
          sql: PRUNE_STATEMENTS.rejectedReadings,
          args: [cutoffs.diagnosticsBefore, limit],
        });
        if (rejected.rowsAffected > 0) this.#rejectedTotals = null;
        return {
          synced: synced.rowsAffected,
          failed: failed.rowsAffected,
          syncLog: syncLog.rowsAffected,
          rejectedReadings: rejected.rowsAffected,
        };
      }),
    );
  }

  close(): Promise<void> {
    return this.#db.close();
  }
}

/** A store that runs SQLite on the calling thread. */
export async function openTelemetryStore(options: OpenTelemetryStoreOptions): Promise<TelemetryStore> {
  const db = await openEdgeDatabase(options.url, options);
  return new SqlTelemetryStore(db, options.deviceId, {
    legacyClaimPlan: options.legacyClaimPlan ?? false,
    ...(options.rejectedReadings ? { rejectedReadings: options.rejectedReadings } : {}),
  });
}
