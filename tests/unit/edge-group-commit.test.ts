import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { GroupCommitWriter } from '../../edge/ingest/group-commit.js';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { makeRecord, TEST_DEVICE_ID } from '../helpers/records.js';
import { tempTelemetryStore, type TempDatabase } from '../helpers/edge-temp-db.js';
import { registerCleanup } from '../helpers/teardown.js';

let database: TempDatabase;
let store: TelemetryStore;
let reader: Client;

async function storedCount(): Promise<number> {
  return Number((await reader.execute('SELECT count(*) AS n FROM telemetry_data')).rows[0]?.['n']);
}

async function isStored(id: string): Promise<boolean> {
  return (await reader.execute({ sql: 'SELECT 1 FROM telemetry_data WHERE id = ?', args: [id] })).rows.length === 1;
}

function writerFor(maxRecordsPerCommit?: number, committed: number[] = []): GroupCommitWriter<TelemetryRecord> {
  return new GroupCommitWriter<TelemetryRecord>({
    commit: (records) => store.insertReadings(records),
    maxRecordsPerCommit,
    onCommitted: (count) => committed.push(count),
  });
}

beforeEach(async () => {
  ({ database, store, reader } = await tempTelemetryStore('edge-group-commit'));
});

describe('GroupCommitWriter', () => {
  it('resolves each write only once its reading is committed', async () => {
    const writer = writerFor();
    const records = Array.from({ length: 50 }, () => makeRecord());
    const visibleAtResolution = await Promise.all(
      records.map((record) => writer.write(record).then(() => isStored(record.id))),
    );
    expect(visibleAtResolution.every(Boolean)).toBe(true);
  });

  it('gathers concurrent writes into few commits, each capped at maxRecordsPerCommit', async () => {
    const committed: number[] = [];
    const writer = writerFor(40, committed);
    await Promise.all(Array.from({ length: 100 }, () => writer.write(makeRecord())));
    expect(await storedCount()).toBe(100);
    await expect.poll(() => committed, { timeout: 5000, interval: 10 }).toHaveLength(3);
    expect(committed).toEqual([40, 40, 20]);
    expect(writer.stats).toEqual({
      commits: 3,
      committedRecords: 100,
      failedCommits: 0,
      largestCommit: 40,
      storageFullRetries: 0,
    });
  });

  it('rejects every write of a failed commit and stores none of them; later commits go on', async () => {
    const writer = writerFor();
    const good = Array.from({ length: 5 }, () => makeRecord());
    const broken = { ...makeRecord(), sensorId: undefined } as unknown as TelemetryRecord;
    const results = await Promise.allSettled([...good, broken].map((record) => writer.write(record)));
    expect(results.map((result) => result.status)).toEqual(Array(6).fill('rejected'));
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/undefined cannot be passed/);
    expect(await storedCount()).toBe(0);

    const after = makeRecord();
    await writer.write(after);
    expect(await isStored(after.id)).toBe(true);
    expect(writer.stats).toMatchObject({ commits: 1, failedCommits: 1 });
  });

  it('close() waits for accepted writes and refuses new ones', async () => {
    const writer = writerFor(10);
    const writes = Array.from({ length: 35 }, () => writer.write(makeRecord()));
    await writer.close();
    expect(await storedCount()).toBe(35);
    await Promise.all(writes);
    await expect(writer.write(makeRecord())).rejects.toThrow(
      'the group-commit writer is closed; the reading was not stored',
    );
  });
});

/** A gate the test opens and closes by hand (the agent's is the StorageGuard). */
function manualGate(open: boolean) {
  let waiters: (() => void)[] = [];
  return {
    open,
    whenOpen(): Promise<void> {
      return this.open ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve));
    },
    setOpen(value: boolean) {
      this.open = value;
      if (value) {
        waiters.forEach((resolve) => resolve());
        waiters = [];
      }
    },
  };
}

describe('GroupCommitWriter when storage is full (G8)', () => {
  it('commits nothing while the admission gate is closed, and every waiting reading once it opens', async () => {
    const gate = manualGate(false);
    const writer = new GroupCommitWriter<TelemetryRecord>({
      commit: (records) => store.insertReadings(records),
      admission: gate,
    });
    let resolved = 0;
    const records = Array.from({ length: 30 }, () => makeRecord());
    const writes = records.map((record) => writer.write(record).then(() => (resolved += 1)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(writer.waitingForSpace).toBe(true);
    expect(resolved).toBe(0);
    expect(await storedCount()).toBe(0);
    gate.setOpen(true);
    await Promise.all(writes);
    expect(await storedCount()).toBe(30);
    expect(writer.waitingForSpace).toBe(false);
  });

  it('puts a group that finds the disk full (SQLITE_FULL) back to wait, and commits it once there is room', async () => {
    await store.close();
    store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID, maxDbBytes: 4 * 1024 * 1024 });
    const capped = store;
    registerCleanup(() => capped.close());
    const filler = database.openReader();
    // the store's connection may grow the file to 4 MiB (max_page_count); leave it almost no room
    await filler.execute(`CREATE TABLE ballast (b BLOB)`);
    await filler.execute(`INSERT INTO ballast SELECT zeroblob(3900 * 1024)`);
    const gate = manualGate(true);
    const fullErrors: unknown[] = [];
    const writer = new GroupCommitWriter<TelemetryRecord>({
      commit: (records) => store.insertReadings(records),
      admission: gate,
      isStorageFull: (error) => (error as { code?: string }).code === 'SQLITE_FULL',
      onStorageFull: (error) => {
        fullErrors.push(error);
        gate.setOpen(false);
      },
    });
    const records = Array.from({ length: 2000 }, () => makeRecord({ metadata: { pad: 'x'.repeat(200) } }));
    let resolved = 0;
    const writes = records.map((record) => writer.write(record).then(() => (resolved += 1)));
    await expect
      .poll(() => fullErrors.length, { timeout: 15_000, message: 'a commit to find the disk full' })
      .toBeGreaterThan(0);
    expect(writer.stats.failedCommits).toBe(0);
    expect(resolved).toBe(0);
    await filler.execute('DROP TABLE ballast'); // room again
    gate.setOpen(true);
    await Promise.all(writes);
    expect(await storedCount()).toBe(2000);
    expect(writer.stats.storageFullRetries).toBeGreaterThan(0);
  });

  it('refuses the readings waiting for space at close() instead of waiting for space forever', async () => {
    const writer = new GroupCommitWriter<TelemetryRecord>({
      commit: (records) => store.insertReadings(records),
      admission: manualGate(false),
    });
    const write = writer.write(makeRecord());
    await new Promise((resolve) => setTimeout(resolve, 20));
    await writer.close();
    await expect(write).rejects.toThrow(/stopping while its storage is full/);
    expect(await storedCount()).toBe(0);
  });
});
