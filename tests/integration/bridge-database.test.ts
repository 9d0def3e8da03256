/**
 * The telemetry writer and the migrations on a real PostgreSQL at SERIALIZABLE.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import { detectDialect } from '../../bridge/db/dialect.js';
import { migrate } from '../../bridge/db/migrate.js';
import { RECORD_OF_ANOTHER_DEVICE } from '../../bridge/ingest/conflict-resolution.js';
import type { TelemetryRow } from '../../bridge/ingest/telemetry-row.js';
import {
  telemetryUpsertStatements,
  type TelemetryWriteScope,
  writeTelemetryBatch,
  type TelemetryWriteMessage,
} from '../../bridge/ingest/telemetry-writer.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { BASE_TIME_MS, makeRow } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';

let db: Database;

beforeAll(async () => {
  db = await openTestDatabase(await startTestPostgres(), 'bridge-database-test', { migrate: true });
});

beforeEach(async () => {
  await db.none('TRUNCATE telemetry_data, conflict_log, sync_status, commands, device_configs, devices');
});

function message(deviceId: string, records: TelemetryRow[], pendingCount: number | null = null): TelemetryWriteMessage {
  return { deviceId, records, invalid: [], pendingCount };
}

/** version is BIGINT, which node-postgres returns as a string: converted here, where it is read */
async function storedRows(): Promise<
  Array<{ id: string; device_id: string; value: number; version: number; metadata: unknown; timestamp: Date }>
> {
  const rows = await db.any<{
    id: string;
    device_id: string;
    value: number;
    version: string;
    metadata: unknown;
    timestamp: Date;
  }>('SELECT id, device_id, value, version, metadata, "timestamp" FROM telemetry_data ORDER BY id');
  return rows.map((stored) => ({ ...stored, version: Number(stored.version) }));
}

describe('migrations', () => {
  it('apply on an empty database and then find nothing left to do', async () => {
    expect(await detectDialect(db)).toBe('postgresql');
    expect(await migrate(db)).toEqual({ dialect: 'postgresql', applied: [] });
    const versions = await db.any<{ version: string }>('SELECT version FROM schema_migrations');
    expect(versions.map((v) => v.version).sort()).toEqual([
      '001_initial_schema',
      '002_dropped_records_count',
      '002_revoked_certificates',
      '003_commands_and_config',
      '004_telemetry_device_record_index',
    ]);
  });

  it('re-run every statement without error when the bookkeeping is lost', async () => {
    await db.none('DELETE FROM schema_migrations');
    expect(await migrate(db)).toEqual({
      dialect: 'postgresql',
      applied: [
        '001_initial_schema',
        '002_dropped_records_count',
        '002_revoked_certificates',
        '003_commands_and_config',
        '004_telemetry_device_record_index',
      ],
    });
  });
});

describe('writeTelemetryBatch', () => {
  it('stores readings exactly, registers the device and records sync_status', async () => {
    const device = randomUUID();
    const records = [
      makeRow(device, { value: 0.1 + 0.2, metadata: { nested: { list: [1, 'two'] } } }),
      makeRow(device, { unit: null, metadata: null }),
    ];
    const result = await writeTelemetryBatch(db, [message(device, records, 7)]);
    expect(result.outcomes).toEqual([{ accepted: 2, rejected: [], conflicts: 0, inserted: 2 }]);

    const rows = await storedRows();
    expect(rows).toHaveLength(2);
    const first = rows.find((r) => r.id === records[0]?.id);
    expect(first?.value).toBe(0.1 + 0.2);
    expect(first?.metadata).toEqual({ nested: { list: [1, 'two'] } });
    expect(first?.timestamp.toISOString()).toBe(new Date(BASE_TIME_MS).toISOString());
    expect(rows.find((r) => r.id === records[1]?.id)?.metadata).toBeNull();

    const registered = await db.one(
      'SELECT device_name, device_type, status, last_seen_at FROM devices WHERE device_id = $1',
      [device],
    );
    expect(registered).toMatchObject({ device_name: device, device_type: 'edge', status: 'active' });
    expect(registered.last_seen_at).toBeInstanceOf(Date);
    const status = await db.one('SELECT * FROM sync_status WHERE device_id = $1', [device]);
    // BIGINT columns arrive as strings
    expect(status).toMatchObject({
      last_sync_status: 'success',
      pending_records_count: '7',
      total_synced_records: '2',
      last_error: null,
      dropped_records_count: '0',
    });
  });

  it('keeps the largest droppedCount a device reported (a total), also when an older batch arrives later', async () => {
    const device = randomUUID();
    const dropped = async () =>
      (await db.one('SELECT dropped_records_count FROM sync_status WHERE device_id = $1', [device]))
        .dropped_records_count;
    await writeTelemetryBatch(db, [{ ...message(device, [makeRow(device)]), droppedCount: 500 }]);
    expect(await dropped()).toBe('500');
    await writeTelemetryBatch(db, [{ ...message(device, [makeRow(device)]), droppedCount: 120 }]); // re-sent, older
    expect(await dropped()).toBe('500');
    await writeTelemetryBatch(db, [message(device, [makeRow(device)])]); // an edge that does not report it
    expect(await dropped()).toBe('500');
    await writeTelemetryBatch(db, [{ ...message(device, [makeRow(device)]), droppedCount: 2500 }]);
    expect(await dropped()).toBe('2500');
  });

  it('writing the same batch twice adds no rows and no conflicts', async () => {
    const device = randomUUID();
    const batch = [message(device, [makeRow(device), makeRow(device), makeRow(device)])];
    await writeTelemetryBatch(db, batch);
    const again = await writeTelemetryBatch(db, batch);
    expect(again.outcomes).toEqual([{ accepted: 3, rejected: [], conflicts: 0, inserted: 0 }]);
    expect(again.upserted).toBe(0);
    expect(await storedRows()).toHaveLength(3);
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM conflict_log')).n).toBe(0);
    expect((await db.one('SELECT total_synced_records FROM sync_status')).total_synced_records).toBe('3');
  });

  it('a stale version never overwrites a newer one and is written to conflict_log (once)', async () => {
    const device = randomUUID();
    const id = randomUUID();
    await writeTelemetryBatch(db, [message(device, [makeRow(device, { id, version: 3, value: 30 })])]);
    const stale = [message(device, [makeRow(device, { id, version: 2, value: 20 })])];
    const result = await writeTelemetryBatch(db, stale);
    await writeTelemetryBatch(db, stale); // redelivered

    expect(result.outcomes[0]).toMatchObject({ accepted: 1, conflicts: 1, rejected: [] });
    expect((await storedRows()).map((r) => [r.version, r.value])).toEqual([[3, 30]]);
    const conflicts = await db.any('SELECT * FROM conflict_log');
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({
      device_id: device,
      record_id: id,
      conflict_type: 'stale-version',
      local_value: { version: 2, value: 20 },
      remote_value: { version: 3, value: 30 },
      resolved_value: { version: 3, value: 30 },
      resolution_strategy: 'last-write-wins',
    });
  });

  it('a higher version replaces the stored reading', async () => {
    const device = randomUUID();
    const id = randomUUID();
    await writeTelemetryBatch(db, [message(device, [makeRow(device, { id, version: 1, value: 1 })])]);
    await writeTelemetryBatch(db, [message(device, [makeRow(device, { id, version: 2, value: 2 })])]);
    expect((await storedRows()).map((r) => [r.version, r.value])).toEqual([[2, 2]]);
  });

  it('a tie ends with the same row whichever reading arrived first', async () => {
    const device = randomUUID();
    const id = randomUUID();
    const a = makeRow(device, { id, value: 1 });
    const b = makeRow(device, { id, value: 2 });
    const winner = a.contentHash > b.contentHash ? a : b;

    await writeTelemetryBatch(db, [message(device, [a])]);
    await writeTelemetryBatch(db, [message(device, [b])]);
    const afterAB = await storedRows();
    await db.none('TRUNCATE telemetry_data, conflict_log');
    await writeTelemetryBatch(db, [message(device, [b])]);
    await writeTelemetryBatch(db, [message(device, [a])]);
    const afterBA = await storedRows();

    expect(afterAB.map((r) => r.value)).toEqual([winner.value]);
    expect(afterBA.map((r) => r.value)).toEqual([winner.value]);
    const conflict = await db.one('SELECT conflict_type, resolved_value FROM conflict_log');
    expect(conflict).toMatchObject({ conflict_type: 'version-tie', resolved_value: { value: winner.value } });
  });

  it('logs a tie once, also when the first of the two readings is delivered again afterwards', async () => {
    const device = randomUUID();
    const id = randomUUID();
    const [loser, winner] = [makeRow(device, { id, value: 1 }), makeRow(device, { id, value: 2 })].sort((x, y) =>
      x.contentHash < y.contentHash ? -1 : 1,
    ) as [TelemetryRow, TelemetryRow];

    await writeTelemetryBatch(db, [message(device, [loser])]);
    await writeTelemetryBatch(db, [message(device, [winner])]); // the tie: logged
    const redelivered = await writeTelemetryBatch(db, [message(device, [loser])]); // its ack was lost: the edge sends it again

    expect(redelivered.outcomes[0]).toMatchObject({ accepted: 1, conflicts: 1 });
    expect((await storedRows()).map((r) => r.value)).toEqual([winner.value]);
    const logged = await db.any('SELECT conflict_type, resolved_value FROM conflict_log WHERE record_id = $1', [id]);
    expect(logged).toEqual([
      { conflict_type: 'version-tie', resolved_value: expect.objectContaining({ value: winner.value }) },
    ]);
  });

  it('rejects a record id owned by another device and stores the rest', async () => {
    const owner = randomUUID();
    const intruder = randomUUID();
    const id = randomUUID();
    await writeTelemetryBatch(db, [message(owner, [makeRow(owner, { id, value: 1 })])]);
    const own = makeRow(intruder);
    const result = await writeTelemetryBatch(db, [
      message(intruder, [makeRow(intruder, { id, version: 9, value: 666 }), own]),
    ]);

    expect(result.outcomes[0]).toEqual({
      accepted: 1,
      rejected: [{ id, reason: RECORD_OF_ANOTHER_DEVICE }],
      conflicts: 0,
      inserted: 1,
    });
    const rows = await storedRows();
    expect(rows.find((r) => r.id === id)).toMatchObject({ device_id: owner, value: 1, version: 1 });
    expect(rows.find((r) => r.id === own.id)?.device_id).toBe(intruder);
    expect(
      await db.one('SELECT last_sync_status, last_error FROM sync_status WHERE device_id = $1', [intruder]),
    ).toEqual({
      last_sync_status: 'partial',
      last_error: `1 record(s) rejected, e.g. ${id}: ${RECORD_OF_ANOTHER_DEVICE}`,
    });
  });

  it("rejects another device's record id inside a large batch (the insert meets the primary key, and the batch is written again by id)", async () => {
    const LARGE = 300;
    const owner = randomUUID();
    const intruder = randomUUID();
    const id = randomUUID();
    await writeTelemetryBatch(db, [message(owner, [makeRow(owner, { id, value: 1 })])]);
    const own = Array.from({ length: LARGE }, () => makeRow(intruder));
    const result = await writeTelemetryBatch(db, [message(intruder, [...own, makeRow(intruder, { id, version: 9 })])]);
    expect(result.outcomes[0]).toEqual({
      accepted: LARGE,
      rejected: [{ id, reason: RECORD_OF_ANOTHER_DEVICE }],
      conflicts: 0,
      inserted: LARGE,
    });
    const rows = await storedRows();
    expect(rows.find((r) => r.id === id)).toMatchObject({ device_id: owner, value: 1, version: 1 });
    expect(rows.filter((r) => r.device_id === intruder)).toHaveLength(LARGE);
  });

  it('writes many devices and the same id twice in one batch as one transaction', async () => {
    const devices = [randomUUID(), randomUUID(), randomUUID()];
    const shared = randomUUID();
    const messages = devices.map((device) =>
      message(
        device,
        Array.from({ length: 50 }, () => makeRow(device)),
        0,
      ),
    );
    messages.push(message(devices[0] as string, [makeRow(devices[0] as string, { id: shared, version: 1 })]));
    messages.push(message(devices[0] as string, [makeRow(devices[0] as string, { id: shared, version: 2, value: 2 })]));
    const result = await writeTelemetryBatch(db, messages);

    expect(result.outcomes.map((o) => o.accepted)).toEqual([50, 50, 50, 1, 1]);
    expect(result.upserted).toBe(151);
    expect(await storedRows()).toHaveLength(151);
    expect((await db.one('SELECT version FROM telemetry_data WHERE id = $1', [shared])).version).toBe('2');
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM sync_status')).n).toBe(3);
  });

  it('splits every multi-row INSERT into statements of at most 500 rows and 4 MiB, in one transaction', async () => {
    // CockroachDB refuses a client message over 16 MiB (08P01). 501 devices with one 16 KiB reading
    // each: an 8 MiB upsert, and once they are all stale, 24 MiB of conflict_log (3 JSON copies each).
    const devices = Array.from({ length: 501 }, () => randomUUID()).sort();
    const metadata = { blob: 'x'.repeat(16 * 1024) };
    const ids = devices.map(() => randomUUID());
    const newer = devices.map((device, i) =>
      message(device, [makeRow(device, { id: ids[i], version: 2, metadata })], 3),
    );
    const stale = devices.map((device, i) =>
      message(device, [makeRow(device, { id: ids[i], version: 1, metadata })], 3),
    );
    const statements: string[] = [];
    const options = db.$config.options as { query?: (event: { query: unknown }) => void };
    options.query = (event) => {
      if (typeof event.query === 'string' && event.query.startsWith('INSERT')) statements.push(event.query);
    };
    const stopRecording = registerCleanup(() => delete options.query);
    expect((await writeTelemetryBatch(db, newer)).upserted).toBe(501);
    expect((await writeTelemetryBatch(db, stale)).conflictsLogged).toBe(501);
    await stopRecording();

    const count = (table: string) => statements.filter((sql) => sql.startsWith(`INSERT INTO "${table}"`)).length;
    expect(Math.max(...statements.map((sql) => Buffer.byteLength(sql)))).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(count('devices')).toBe(4); // 500 + 1 rows, twice
    expect(count('sync_status')).toBe(4);
    expect(count('telemetry_data')).toBeGreaterThanOrEqual(2);
    expect(count('conflict_log')).toBeGreaterThanOrEqual(6);
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM telemetry_data')).n).toBe(501);
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM conflict_log')).n).toBe(501);
    expect((await db.one<{ n: number }>('SELECT count(*)::int AS n FROM sync_status')).n).toBe(501);
    expect((await storedRows()).every((stored) => stored.version === 2)).toBe(true);
  });

  it('checks the upsert guard over all chunks and rolls back every chunk when one row was not written', async () => {
    const device = randomUUID();
    const ids = Array.from({ length: 501 }, () => randomUUID()).sort();
    const skipped = ids[500] as string; // the only row of the second chunk
    await writeTelemetryBatch(db, [
      message(
        device,
        ids.map((id) => makeRow(device, { id, version: 1 })),
      ),
    ]);
    // Test-only stand-in for a concurrent writer: the update of one row is silently skipped.
    await db.none(`CREATE FUNCTION skip_one() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.id = '${skipped}' THEN RETURN NULL; END IF; RETURN NEW; END $$`);
    await db.none('CREATE TRIGGER skip_one BEFORE UPDATE ON telemetry_data FOR EACH ROW EXECUTE FUNCTION skip_one()');
    registerCleanup(() => db.none('DROP TRIGGER skip_one ON telemetry_data; DROP FUNCTION skip_one()'));
    const newer = [
      message(
        device,
        ids.map((id) => makeRow(device, { id, version: 2 })),
      ),
    ];
    const policy = { initialDelayMs: 1, maxDelayMs: 1, multiplier: 1, jitter: 'none' as const, maxAttempts: 2 };
    await expect(writeTelemetryBatch(db, newer, { retry: { policy } })).rejects.toThrow(
      /upsert guard skipped 1 of 501 rows/,
    );
    expect((await storedRows()).map((stored) => stored.version)).toEqual(ids.map(() => 1));
  });

  it('a message whose records were all invalid still registers the device and marks the sync failed', async () => {
    const device = randomUUID();
    const result = await writeTelemetryBatch(db, [
      { deviceId: device, records: [], invalid: [{ id: 'x', reason: 'bad' }], pendingCount: 4 },
    ]);
    expect(result.outcomes).toEqual([
      { accepted: 0, rejected: [{ id: 'x', reason: 'bad' }], conflicts: 0, inserted: 0 },
    ]);
    expect(
      await db.one('SELECT last_sync_status, pending_records_count FROM sync_status WHERE device_id = $1', [device]),
    ).toEqual({
      last_sync_status: 'failed',
      pending_records_count: '4',
    });
  });

  it('stores 64-bit counts: a pendingCount beyond 32 bits, and the largest exact one', async () => {
    const device = randomUUID();
    await writeTelemetryBatch(db, [message(device, [makeRow(device)], 3_000_000_000)]);
    expect(
      (await db.one('SELECT pending_records_count FROM sync_status WHERE device_id = $1', [device]))
        .pending_records_count,
    ).toBe('3000000000');
    await writeTelemetryBatch(db, [message(device, [makeRow(device)], Number.MAX_SAFE_INTEGER)]);
    expect(
      (await db.one('SELECT pending_records_count FROM sync_status WHERE device_id = $1', [device]))
        .pending_records_count,
    ).toBe(String(Number.MAX_SAFE_INTEGER));
  });

  it('stores a message whose rejected record echoes a NUL character (sync_status.last_error cannot hold U+0000)', async () => {
    const device = randomUUID();
    const good = makeRow(device);
    const result = await writeTelemetryBatch(db, [
      { deviceId: device, records: [good], invalid: [{ id: 'a\u0000b', reason: "no '\u0000'" }], pendingCount: null },
    ]);
    expect(result.outcomes[0]).toMatchObject({ accepted: 1, rejected: [{ id: 'a\u0000b', reason: "no '\u0000'" }] });
    expect((await storedRows()).map((r) => r.id)).toEqual([good.id]);
    expect((await db.one('SELECT last_error FROM sync_status WHERE device_id = $1', [device])).last_error).toBe(
      "1 record(s) rejected, e.g. a\ufffdb: no '\ufffd'",
    );
  });
});

describe('the upsert guard (protection against concurrent writers)', () => {
  async function upsertDirectly(rows: TelemetryRow[], scope: TelemetryWriteScope = 'device'): Promise<string[]> {
    const written: string[] = [];
    for (const sql of telemetryUpsertStatements(rows, scope))
      written.push(...(await db.any<{ id: string }>(sql)).map((w) => w.id));
    return written;
  }

  it('applies exactly what the pure rule lets win', async () => {
    const device = randomUUID();
    const other = randomUUID();
    const id = randomUUID();
    const a = makeRow(device, { id, version: 2, value: 1 });
    const b = makeRow(device, { id, version: 2, value: 2 });
    const [tieWinner, tieLoser] = a.contentHash > b.contentHash ? [a, b] : [b, a];
    await writeTelemetryBatch(db, [message(device, [tieLoser]), message(other, [makeRow(other)])]);

    expect(await upsertDirectly([makeRow(device, { id, version: 1, value: 9 })])).toEqual([]); // stale
    expect(await upsertDirectly([tieLoser])).toEqual([]); // duplicate: nothing to change
    // another device's row with this id: the id-wide path skips it (the guard), the device path
    // cannot insert it (the primary key), which sends the writer to the id-wide path
    expect(await upsertDirectly([makeRow(other, { id, version: 5 })], 'record-id')).toEqual([]);
    await expect(upsertDirectly([makeRow(other, { id, version: 5 })])).rejects.toMatchObject({ code: '23505' });
    expect(await upsertDirectly([tieWinner])).toEqual([id]);
    expect(await upsertDirectly([tieLoser])).toEqual([]);
    expect(await upsertDirectly([makeRow(device, { id, version: 3, value: 3 })])).toEqual([id]);
    expect((await storedRows()).find((r) => r.id === id)).toMatchObject({ version: 3, value: 3 });
  });
});
