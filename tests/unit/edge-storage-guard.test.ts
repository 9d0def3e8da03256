/**
 * The storage guard on a real libSQL file with an 8 MiB cap (a 2 MiB reserve): synced readings are pruned first
 * when space is short; only then does the policy act (withhold, or drop the oldest pending).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fillEdgeBacklog } from '../../devtools/edge-backlog.js';
import { StorageGuard } from '../../edge/storage-guard.js';
import { openTelemetryStore, type TelemetryStore } from '../../edge/store/telemetry-store.js';
import { testLogger } from '../helpers/logger.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { tempDatabase, type TempDatabase } from '../helpers/edge-temp-db.js';

const CAP = 8 * 1024 * 1024;
let database: TempDatabase;
let store: TelemetryStore;
let guard: StorageGuard | undefined;

beforeEach(() => {
  database = tempDatabase('edge-guard');
});

afterEach(async () => {
  await guard?.close();
  guard = undefined;
  await store.close();
});

const start = async (policy: 'reject-new' | 'drop-oldest') => {
  store = await openTelemetryStore({ url: database.url, deviceId: TEST_DEVICE_ID, maxDbBytes: CAP });
  guard = await StorageGuard.start({
    store,
    maxDbBytes: CAP,
    policy,
    logger: testLogger(),
    checkIntervalMs: 60_000,
  });
  return guard;
};

describe('StorageGuard', () => {
  it('prunes synced readings before anything else and stays open when that makes room', async () => {
    await fillEdgeBacklog(database.path, TEST_DEVICE_ID, [
      { count: 24_000, status: 'synced' },
      { count: 4_000, status: 'pending' },
    ]);
    const running = await start('reject-new');
    expect(running.open).toBe(true);
    const counts = await store.countByStatus();
    expect(counts.pending).toBe(4_000);
    expect(counts.synced).toBeLessThan(24_000);
    expect(running.lastAssessment!.usedBytes).toBeLessThan(running.lastAssessment!.lowWaterBytes);
  }, 30_000);

  it('withholds (closes the gate) when only pending readings fill the store, and opens once they are gone', async () => {
    await fillEdgeBacklog(database.path, TEST_DEVICE_ID, [{ count: 26_000, status: 'pending' }]);
    const running = await start('reject-new');
    expect(running.open).toBe(false);
    expect((await store.countByStatus()).pending).toBe(26_000); // nothing pending is lost
    let opened = false;
    const whenOpen = running.whenOpen().then(() => (opened = true));
    // the uplink drains in the reserve: claims and acks still fit, and acks delete while short
    for (let batch = 0; !opened && batch < 26; batch += 1) {
      const claimed = await store.claimNextBatch(1000, 1024 * 1024, `batch-${batch}`);
      const ack = { batchId: claimed.batchId, accepted: claimed.records.length, rejected: [], conflicts: 0 };
      await store.applyAck(ack, 1, { deleteSynced: running.short });
      await running.requestCheck();
    }
    await whenOpen;
    expect(opened).toBe(true);
    expect((await store.countByStatus()).synced).toBe(0); // deleted on ack, not kept
  }, 30_000);

  it('drops the oldest pending readings under drop-oldest and counts them', async () => {
    await fillEdgeBacklog(database.path, TEST_DEVICE_ID, [{ count: 26_000, status: 'pending' }]);
    const running = await start('drop-oldest');
    expect(running.open).toBe(true);
    const left = (await store.countByStatus()).pending;
    expect(running.droppedTotal).toBe(26_000 - left);
    expect(left).toBeGreaterThan(0);
    expect(await store.readCounters()).toMatchObject({ droppedPendingReadings: 26_000 - left });
    // the oldest went: the first reading left is the one right after the dropped ones
    const next = await store.claimNextBatch(1, 1024 * 1024, 'b');
    expect(Date.parse(next.records[0]!.timestamp)).toBe(Date.UTC(2025, 0, 1) + (26_000 - left));
  }, 30_000);
});
