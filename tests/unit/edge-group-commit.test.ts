import { beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@libsql/client';
import type { TelemetryRecord } from '../../schemas/messages.js';
import { GroupCommitWriter } from '../../edge/ingest/group-commit.js';
import type { TelemetryStore } from '../../edge/store/telemetry-store.js';
import { makeRecord } from '../helpers/records.js';
import { tempTelemetryStore } from '../helpers/edge-temp-db.js';

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
  ({ store, reader } = await tempTelemetryStore('edge-group-commit'));
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
    expect(writer.stats).toEqual({ commits: 3, committedRecords: 100, failedCommits: 0, largestCommit: 40 });
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
