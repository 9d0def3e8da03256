/**
 * The ingest pipeline's parse of large messages in slices (G7, bridge/ingest/ingest-pipeline.ts):
 * a message over INLINE_PARSE_BYTES is held from the moment it is admitted, a device's messages
 * still reach the database in the order they arrived, an unreadable one is answered like any
 * other, and close() releases (never acknowledges) what is still being parsed. The database write
 * is an in-memory recorder: what is under test is the pipeline's ordering and accounting.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { INLINE_PARSE_BYTES, IngestPipeline, type InboundMessage } from '../../bridge/ingest/ingest-pipeline.js';
import type { TelemetryWriteMessage, TelemetryWriteResult } from '../../bridge/ingest/telemetry-writer.js';
import { createBridgeMetrics } from '../../bridge/metrics.js';
import type { SyncAck, TelemetryBatch } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { testLogger } from '../helpers/logger.js';
import { makeBatch, makeRecord } from '../helpers/records.js';

const DEVICE = randomUUID();
const OTHER = randomUUID();
const poll = { timeout: 5_000, interval: 5 };

interface Recorded extends InboundMessage {
  state(): 'open' | 'acked' | 'released';
}

function delivery(deviceId: string, body: TelemetryBatch | string): Recorded {
  let state: 'open' | 'acked' | 'released' = 'open';
  return {
    topic: topics.telemetry(deviceId),
    payload: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    committed: () => undefined,
    ack: () => void (state = 'acked'),
    release: () => void (state = 'released'),
    isStale: () => false,
    state: () => state,
  };
}

/** A batch of `count` readings with about 1 KB of metadata each: large enough to be parsed in slices. */
const largeBatch = (count = 200): TelemetryBatch =>
  makeBatch(Array.from({ length: count }, () => makeRecord({ metadata: { note: 'x'.repeat(1000) } })));

let pipeline: IngestPipeline | undefined;
afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

function start() {
  const written: string[] = [];
  const acks: SyncAck[] = [];
  pipeline = new IngestPipeline({
    write: (messages: TelemetryWriteMessage[]): Promise<TelemetryWriteResult> => {
      for (const message of messages)
        written.push(`${message.deviceId === DEVICE ? 'D' : 'O'}:${message.records.length}`);
      return Promise.resolve({
        outcomes: messages.map((m) => ({
          accepted: m.records.length,
          rejected: [],
          conflicts: 0,
          inserted: m.records.length,
        })),
        upserted: messages.reduce((sum, m) => sum + m.records.length, 0),
        conflictsLogged: 0,
      });
    },
    publishAck: (_deviceId, ack) => {
      acks.push(ack);
      return Promise.resolve();
    },
    logger: testLogger('sliced-parse'),
    metrics: createBridgeMetrics(),
    limits: { maxRecords: 2000, maxMessages: 500, maxBytes: 4 * 1024 * 1024, lingerMs: 0 },
  });
  return { pipeline, written, acks };
}

describe('the ingest pipeline with messages parsed in slices', () => {
  it('parses a large message in slices and holds it from the moment it is accepted', async () => {
    const { pipeline, written } = start();
    const large = delivery(DEVICE, largeBatch());
    expect(large.payload.length).toBeGreaterThan(INLINE_PARSE_BYTES);
    pipeline.accept(large);
    // not parsed yet (that takes turns of the event loop), but already held: it counts against the bounds
    expect(pipeline.held.messages).toBe(1);
    expect(written).toEqual([]);
    await expect.poll(() => large.state(), poll).toBe('acked');
    expect(written).toEqual(['D:200']);
    expect(pipeline.held.messages).toBe(0);
  });

  it("keeps a device's messages in arrival order when a small one follows a large one, while other devices go on", async () => {
    const { pipeline, written } = start();
    const deliveries = [
      delivery(DEVICE, largeBatch(300)),
      delivery(DEVICE, makeBatch([makeRecord()])),
      delivery(OTHER, makeBatch([makeRecord(), makeRecord()])),
      delivery(DEVICE, largeBatch(100)),
      delivery(DEVICE, makeBatch([makeRecord(), makeRecord(), makeRecord()])),
    ];
    for (const inbound of deliveries) pipeline.accept(inbound);
    await expect.poll(() => deliveries.map((inbound) => inbound.state()), poll).toEqual(deliveries.map(() => 'acked'));
    expect(written.filter((entry) => entry.startsWith('D:'))).toEqual(['D:300', 'D:1', 'D:100', 'D:3']);
    // the other device's small message did not wait for this device's parse
    expect(written.indexOf('O:2')).toBeLessThan(written.indexOf('D:300'));
  });

  it('answers an unreadable large message with an error ack and holds nothing afterwards', async () => {
    const { pipeline, acks } = start();
    const garbage = delivery(DEVICE, `{"batchId": "${randomUUID()}", "records": [${'1,'.repeat(40_000)}`);
    expect(garbage.payload.length).toBeGreaterThan(INLINE_PARSE_BYTES);
    pipeline.accept(garbage);
    await expect.poll(() => garbage.state(), poll).toBe('acked');
    expect(acks[0]).toMatchObject({ accepted: 0, error: expect.stringMatching(/JSON/i) as unknown });
    expect(pipeline.held).toEqual({ messages: 0, bytes: 0, queued: 0 });
  });

  it('releases a message still being parsed when it closes: not written, not acknowledged, the broker delivers it again', async () => {
    const { pipeline, written } = start();
    const large = delivery(DEVICE, largeBatch(400));
    pipeline.accept(large);
    await pipeline.close();
    expect(large.state()).toBe('released');
    expect(written).toEqual([]);
    expect(pipeline.held.messages).toBe(0);
  });
});
