/**
 * Everything the edge agent does with its libSQL database: readings in (one multi-row upsert per
 * group commit), batches out (claim, ack, release), the sync log and rejected readings. SQL lives
 * here; decisions (which readings fit a batch) come from pure modules.
 *
 * Sync states of telemetry_data.sync_status: pending -> syncing (claimed into a batch) -> synced
 * (the bridge's sync/ack named the batch) | failed (the bridge rejected the reading, or it can
 * never fit a batch). A correction of a reading sends it back to pending from any state.
 */
import type { Client, InStatement, ResultSet, Transaction } from '@libsql/client';
import { newId } from '../../common/ids.js';
import { MAX_SENSOR_PAYLOAD_BYTES } from '../../schemas/limits.js';
import type { SyncAck, TelemetryRecord } from '../../schemas/messages.js';
import { envelopeBytes, planBatch, recordBytes } from './batch-planner.js';
import { openEdgeDatabase, type EdgeDatabase, type EdgeDatabaseOptions } from './database.js';
import { RECORD_COLUMNS, recordFromRow, text } from './telemetry-rows.js';
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
  payload: Buffer | string;
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

export interface OpenTelemetryStoreOptions extends EdgeDatabaseOptions {
  url: string;
  deviceId: string;
}

const SYNC_STATUSES: readonly SyncStatus[] = ['pending', 'syncing', 'synced', 'failed'];

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

async function inWriteTransaction<T>(client: Client, work: (transaction: Transaction) => Promise<T>): Promise<T> {
  const transaction = await client.transaction('write');
  try {
    const result = await work(transaction);
    await transaction.commit();
    return result;
  } finally {
    transaction.close(); // rolls back unless committed
  }
}

interface ClaimLimits {
  maxRecords: number;
  maxBytes: number;
}

export interface ClaimedBatch {
  batchId: string;
  records: TelemetryRecord[];
}

// G5: a reading too large for any batch fails alone instead of blocking the ones behind it
/** Marks readings that no batch of maxBytes can carry 'failed', with the reason. */
async function failOversized(
  transaction: Transaction,
  records: readonly TelemetryRecord[],
  sizes: readonly number[],
  oversized: readonly number[],
  maxBytes: number,
): Promise<void> {
  for (const index of oversized) {
    await transaction.execute({
      sql: `UPDATE telemetry_data SET sync_status = 'failed', sync_error = ?, sync_timestamp = ? WHERE id = ?`,
      args: [
        `reading is ${sizes[index]} bytes of JSON; no telemetry batch of at most ${maxBytes} bytes can carry it`,
        Date.now(),
        records[index]?.id ?? '',
      ],
    });
  }
}

async function markSyncing(
  transaction: Transaction,
  records: readonly TelemetryRecord[],
  batchId: string,
): Promise<void> {
  await transaction.execute({
    sql: `UPDATE telemetry_data SET sync_status = 'syncing', sync_batch_id = ?, sync_error = NULL
          WHERE id IN (${records.map(() => '?').join(', ')})`,
    args: [batchId, ...records.map((record) => record.id)],
  });
}

async function claimOldestPending(
  transaction: Transaction,
  limits: ClaimLimits,
  batchId: string,
): Promise<TelemetryRecord[]> {
  const envelope = envelopeBytes(batchId);
  for (;;) {
    const candidates = await transaction.execute({
      sql: `SELECT ${RECORD_COLUMNS} FROM telemetry_data WHERE sync_status = 'pending' ORDER BY timestamp, id LIMIT ?`,
      args: [limits.maxRecords],
    });
    const records = candidates.rows.map(recordFromRow);
    const sizes = records.map(recordBytes);
    const plan = planBatch(sizes, limits, envelope);
    await failOversized(transaction, records, sizes, plan.oversized, limits.maxBytes);
    const selected = plan.selected.map((index) => records[index] as TelemetryRecord);
    if (selected.length > 0) {
      await markSyncing(transaction, selected, batchId);
      return selected;
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
async function reclaimReleasedBatch(transaction: Transaction, limits: ClaimLimits): Promise<ClaimedBatch | null> {
  for (;;) {
    const oldest = await transaction.execute(
      `SELECT sync_batch_id FROM telemetry_data WHERE sync_status = 'pending' AND sync_batch_id IS NOT NULL ORDER BY timestamp LIMIT 1`,
    );
    const batchId = oldest.rows[0]?.['sync_batch_id'];
    if (typeof batchId !== 'string') return null;
    const rows = await transaction.execute({
      sql: `SELECT ${RECORD_COLUMNS} FROM telemetry_data WHERE sync_status = 'pending' AND sync_batch_id = ? ORDER BY timestamp, id`,
      args: [batchId],
    });
    const records = rows.rows.map(recordFromRow);
    const sizes = records.map(recordBytes);
    const plan = planBatch(sizes, limits, envelopeBytes(batchId));
    await failOversized(transaction, records, sizes, plan.oversized, limits.maxBytes);
    const selected = plan.selected.map((index) => records[index] as TelemetryRecord);
    const chosen = new Set(plan.selected);
    const leftOver = records.filter((_record, index) => !chosen.has(index) && !plan.oversized.includes(index));
    if (leftOver.length > 0) {
      await transaction.execute({
        sql: `UPDATE telemetry_data SET sync_batch_id = NULL WHERE id IN (${leftOver.map(() => '?').join(', ')})`,
        args: leftOver.map((record) => record.id),
      });
    }
    if (selected.length > 0) {
      await markSyncing(transaction, selected, batchId);
      return { batchId, records: selected };
    }
    // nothing of that batch can go out any more: look at the next released batch
  }
}

export class TelemetryStore {
  readonly #db: EdgeDatabase;
  readonly deviceId: string;

  constructor(db: EdgeDatabase, deviceId: string) {
    this.#db = db;
    this.deviceId = deviceId;
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
        const released = await reclaimReleasedBatch(transaction, limits);
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
   */
  applyAck(ack: SyncAck, syncedAtMs: number = Date.now()): Promise<AckOutcome> {
    const batchId = ack.batchId;
    if (batchId === null) return Promise.resolve({ synced: 0, failed: 0 });
    return this.#db.exclusive((client) =>
      inWriteTransaction(client, async (transaction) => {
        let failed = 0;
        for (const rejection of ack.rejected) {
          const result = await transaction.execute({
            sql: `UPDATE telemetry_data SET sync_status = 'failed', sync_error = ?, sync_timestamp = ?
                  WHERE sync_batch_id = ? AND id = ? AND sync_status IN ('syncing', 'pending')`,
            args: [rejection.reason, syncedAtMs, batchId, rejection.id],
          });
          failed += result.rowsAffected;
        }
        const synced = await transaction.execute({
          // G2: the only statement that marks readings 'synced': the bridge's sync/ack for their batch
          sql: `UPDATE telemetry_data SET sync_status = 'synced', sync_timestamp = ?, sync_error = NULL
                WHERE sync_batch_id = ? AND sync_status IN ('syncing', 'pending')`,
          args: [syncedAtMs, batchId],
        });
        return { synced: synced.rowsAffected, failed };
      }),
    );
  }

  /** Puts a batch's 'syncing' rows back to 'pending' (no ack in time); returns how many. */
  releaseBatch(batchId: string): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute({
        sql: `UPDATE telemetry_data SET sync_status = 'pending' WHERE sync_batch_id = ? AND sync_status = 'syncing'`,
        args: [batchId],
      });
      return result.rowsAffected;
    });
  }

  /** Puts every 'syncing' row back to 'pending' (at start-up: no batch is in flight yet). */
  releaseAllSyncing(): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(
        `UPDATE telemetry_data SET sync_status = 'pending' WHERE sync_status = 'syncing'`,
      );
      return result.rowsAffected;
    });
  }

  countByStatus(): Promise<StatusCounts> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute('SELECT sync_status, count(*) AS n FROM telemetry_data GROUP BY sync_status');
      const counts: StatusCounts = { pending: 0, syncing: 0, synced: 0, failed: 0 };
      for (const row of result.rows) {
        const status = text(row, 'sync_status') as SyncStatus;
        if (SYNC_STATUSES.includes(status)) counts[status] = Number(row['n']);
      }
      return counts;
    });
  }

  /** Whether any reading is pending: one index probe, unlike countPending. */
  hasPending(): Promise<boolean> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(`SELECT 1 FROM telemetry_data WHERE sync_status = 'pending' LIMIT 1`);
      return result.rows.length > 0;
    });
  }

  countPending(): Promise<number> {
    return this.#db.exclusive(async (client) => {
      const result = await client.execute(`SELECT count(*) AS n FROM telemetry_data WHERE sync_status = 'pending'`);
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
    const id = newId();
    return this.#db.exclusive(async (client) => {
      await client.execute({
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
    });
  }

  /** Keeps a refused sensor payload (as text, at most MAX_SENSOR_PAYLOAD_BYTES of it) and why. */
  recordRejectedReading(entry: RejectedReadingEntry): Promise<string> {
    const id = newId();
    const bytes = typeof entry.payload === 'string' ? Buffer.from(entry.payload, 'utf8') : entry.payload;
    const text = bytes.subarray(0, MAX_SENSOR_PAYLOAD_BYTES).toString('utf8');
    return this.#db.exclusive(async (client) => {
      await client.execute({
        sql: 'INSERT INTO rejected_readings (id, received_at, topic, payload, reason) VALUES (?, ?, ?, ?, ?)',
        args: [id, entry.receivedAt, entry.topic, text, entry.reason],
      });
      return id;
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
        return {
          synced: synced.rowsAffected,
          failed: failed.rowsAffected,
          syncLog: syncLog.rowsAffected,
          rejectedReadings: rejected.rowsAffected,
        };
      }),
    );
  }

  /** Waits for queued operations, then closes the database. */
  close(): Promise<void> {
    return this.#db.close();
  }
}

export async function openTelemetryStore(options: OpenTelemetryStoreOptions): Promise<TelemetryStore> {
  const db = await openEdgeDatabase(options.url, options);
  return new TelemetryStore(db, options.deviceId);
}
