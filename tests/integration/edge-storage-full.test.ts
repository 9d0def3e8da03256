/**
 * G8 on the edge with a real full disk: the whole agent (store worker, group commit, sensor
 * listener, uplink) on a libSQL file in an 8 MiB tmpfs, real mqtt.js sensors, a plain Aedes
 * broker behind a cuttable TCP relay and a stand-in bridge that acknowledges every batch.
 *
 * reject-new: with the uplink cut, sensors fill the disk; the agent stops a reserve short of
 * full, withholds PUBACKs and keeps the sensors connected; once the uplink is back it drains,
 * prunes what was synced, PUBACKs the withheld readings and accepts new ones, without an operator;
 * every PUBACKed reading reaches the bridge.
 *
 * drop-oldest: over the cap the oldest pending readings make room, every reading is PUBACKed,
 * the drop is counted and reported upstream in droppedCount.
 */
import { Writable } from 'node:stream';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../../edge/agent.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { connectSensor } from '../helpers/edge-sensor.js';
import { startTestBridge, type TestBridge } from '../helpers/edge-test-bridge.js';
import { startTestBroker, type TestBroker } from '../helpers/test-broker.js';
import { smallFilesystem, type SmallFilesystem } from '../helpers/small-filesystem.js';
import { waitFor } from '../helpers/wait.js';

let broker: TestBroker;
let bridge: TestBridge;
let relay: TcpProxy;
let filesystem: SmallFilesystem;
let agent: EdgeAgent | undefined;
let logLines: { level: number; msg: string; component?: string }[];
/** the storage guard's lines at `level` or above (uplink reconnect warnings are another matter) */
const storageLines = (level: number) =>
  logLines.filter((line) => line.component === 'storage-guard' && line.level >= level);
const sensors: MqttClient[] = [];

beforeEach(async () => {
  broker = await startTestBroker();
  bridge = await startTestBridge(broker.url);
  relay = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
  filesystem = smallFilesystem(8);
  logLines = [];
});

afterEach(async () => {
  await Promise.all(sensors.splice(0).map((sensor) => sensor.endAsync(true)));
  await agent?.close();
  agent = undefined;
  await relay.close();
});

async function startAgent(overrides: Partial<EdgeAgentConfig>): Promise<EdgeAgent> {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  agent = await startEdgeAgent({
    deviceId: TEST_DEVICE_ID,
    dbUrl: `file:${join(filesystem.dir, 'edge.db')}`,
    sensorPort: 0,
    brokerUrl: `mqtt://127.0.0.1:${relay.port}`,
    ackTimeoutMs: 5_000,
    syncIntervalMs: 200,
    sendLingerMs: 5,
    reconnectPolicy: { initialDelayMs: 50, maxDelayMs: 300, multiplier: 2, jitter: 'equal' },
    storageCheckIntervalMs: 100,
    logger: pino({ level: 'info' }, sink),
    ...overrides,
  });
  return agent;
}

interface Flood {
  acknowledged: Set<string>;
  /** published, PUBACK not yet received */
  waiting: Map<string, Promise<void>>;
  published: string[];
  closes: number;
  /** stops publishing new readings (those in flight stay in flight) */
  stop(): void;
}

/** `count` sensors, each keeping `window` readings in flight (ids and timestamps in publish order). */
async function flood(port: number, count: number, window: number, total = Number.POSITIVE_INFINITY): Promise<Flood> {
  const state: Flood = {
    acknowledged: new Set(),
    waiting: new Map(),
    published: [],
    closes: 0,
    stop: () => {
      running = false;
    },
  };
  let running = true;
  let sequence = 0;
  const clients = await Promise.all(Array.from({ length: count }, () => connectSensor(port)));
  sensors.push(...clients);
  const loop = async (client: MqttClient, index: number) => {
    client.on('close', () => (state.closes += 1));
    const mine = new Set<Promise<void>>();
    while (running && state.published.length < total) {
      const id = crypto.randomUUID();
      const ts = Date.UTC(2025, 0, 1) + sequence++;
      state.published.push(id);
      const publish = client
        .publishAsync(`sensors/s${index}/temperature`, JSON.stringify({ id, ts, value: 21.5, unit: 'C' }), { qos: 1 })
        .then(() => {
          state.acknowledged.add(id);
          state.waiting.delete(id);
        })
        .finally(() => mine.delete(publish));
      state.waiting.set(id, publish);
      mine.add(publish);
      if (mine.size >= window) await Promise.race(mine);
    }
  };
  // not awaited: a loop waits on PUBACKs that a full store withholds
  clients.forEach((client, index) => void loop(client, index));
  return state;
}

const fileBytes = (path: string) => statSync(path, { throwIfNoEntry: false })?.size ?? 0;

describe('edge storage full (G8)', () => {
  it('reject-new on a full disk: withholds PUBACKs with the sensors connected, then drains, heals and accepts again', async () => {
    const dbPath = join(filesystem.dir, 'edge.db');
    // on a real 8 MiB filesystem the default 1 GiB cap is far away: the filesystem is the limit
    const running = await startAgent(filesystem.mounted ? {} : { maxDbBytes: filesystem.bytes });
    relay.cut();
    const readings = await flood(running.sensorPort, 4, 100);
    const full = await waitFor(
      'the store to fill up and withhold PUBACKs',
      () => running.stats(),
      (stats) => !stats.storage.accepting && stats.storage.withheld > 0,
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    readings.stop();
    const acknowledgedWhenFull = readings.acknowledged.size;
    expect(readings.waiting.size).toBeGreaterThan(0);
    // a reserve short of the capacity, which is what the filesystem had room for
    expect(full.storage.usedBytes).toBeLessThan(full.storage.capacityBytes);
    if (filesystem.mounted) expect(full.storage.capacityBytes).toBeLessThanOrEqual(filesystem.bytes);

    // while full: nothing more is PUBACKed, the sensors stay connected, the log stays short
    for (let check = 0; check < 5; check += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stats = await running.stats();
      expect(stats.storage.accepting).toBe(false);
    }
    expect(readings.acknowledged.size).toBe(acknowledgedWhenFull);
    expect(readings.closes).toBe(0);
    expect(logLines.filter((line) => line.level >= 50)).toEqual([]); // no error: no commit, claim or ack failed
    expect(storageLines(40).length).toBeLessThanOrEqual(3);
    const onDisk = fileBytes(dbPath) + fileBytes(`${dbPath}-wal`) + fileBytes(`${dbPath}-shm`);
    if (filesystem.mounted) expect(onDisk).toBeLessThan(filesystem.bytes);

    // the uplink returns: the agent drains, prunes synced readings and PUBACKs the withheld ones
    relay.restore();
    await waitFor(
      'every withheld reading to be PUBACKed',
      () => readings.waiting.size,
      (left) => left === 0,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(readings.closes).toBe(0);
    // and it takes new readings again, without an operator
    const more = await flood(running.sensorPort, 1, 20, 200);
    await waitFor(
      '200 new readings to be PUBACKed',
      () => more.acknowledged.size,
      (n) => n === 200,
      { timeoutMs: 30_000 },
    );
    more.stop();

    // nothing PUBACKed is lost: every reading reaches the bridge, nothing stays pending
    const acknowledged = [...readings.acknowledged, ...more.acknowledged];
    await waitFor(
      'every PUBACKed reading at the bridge',
      () => new Set(bridge.receivedRecordIds()),
      (received) => acknowledged.every((id) => received.has(id)),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const end = await waitFor(
      'the backlog drained',
      () => running.stats(),
      (stats) => stats.pending === 0 && stats.syncing === 0,
      { timeoutMs: 30_000 },
    );
    expect(end.storage.accepting).toBe(true);
    expect(end.storage.droppedPending).toBe(0);
    expect(acknowledged.length).toBe(readings.published.length + 200); // every reading published got its PUBACK
  }, 180_000);

  it('drop-oldest: PUBACKs every reading, drops the oldest pending ones to make room, counts them and reports them upstream', async () => {
    const running = await startAgent({ maxDbBytes: 4 * 1024 * 1024, overflowPolicy: 'drop-oldest' });
    relay.cut();
    const readings = await flood(running.sensorPort, 1, 50, 20_000);
    await waitFor(
      'every reading PUBACKed',
      () => readings.acknowledged.size,
      (n) => n === 20_000,
      { timeoutMs: 90_000, intervalMs: 100 },
    );
    const stats = await running.stats();
    const dropped = stats.storage.droppedPending;
    expect(dropped).toBeGreaterThan(0);
    expect(stats.pending + dropped).toBe(20_000);
    expect(readings.closes).toBe(0);
    expect(storageLines(40).length).toBeLessThanOrEqual(3);

    relay.restore();
    await waitFor(
      'the kept readings at the bridge',
      () => new Set(bridge.receivedRecordIds()).size,
      (n) => n === 20_000 - dropped,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    // the oldest went: what arrived is exactly the newest 20,000 - dropped readings
    const received = new Set(bridge.receivedRecordIds());
    expect(readings.published.slice(dropped).every((id) => received.has(id))).toBe(true);
    expect(readings.published.slice(0, dropped).some((id) => received.has(id))).toBe(false);
    expect(bridge.received.every((entry) => entry.batch.droppedCount === dropped)).toBe(true);
  }, 180_000);
});
