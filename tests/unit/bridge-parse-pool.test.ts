/**
 * The bridge's parse worker threads (G7, bridge/ingest/parse-pool.ts): they read every message
 * exactly as the event loop would, hand back the SQL tuples with the rows, and when a worker is
 * lost (or the pool is closed) the messages are still read, on the event loop. Real worker
 * threads, through the project's worker boot (common/ts-worker-boot.js).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startParsePool, type ParsePool } from '../../bridge/ingest/parse-pool.js';
import { parseTelemetryMessage } from '../../bridge/ingest/telemetry-message.js';
import { telemetryTuple } from '../../bridge/ingest/telemetry-writer.js';
import { topics } from '../../schemas/topics.js';
import { capturedLogger } from '../helpers/logger.js';
import { makeBatch, makeRecord } from '../helpers/records.js';

const DEVICE = randomUUID();
let pool: ParsePool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

function messages(): Array<[string, Buffer]> {
  const big = makeBatch(Array.from({ length: 300 }, (_, n) => makeRecord({ value: n, metadata: { n, note: "it's" } })));
  const mixed = makeBatch([makeRecord(), { id: 'not-a-uuid', value: 'x' }, makeRecord({ unit: null })]);
  return [
    [topics.telemetry(DEVICE), Buffer.from(JSON.stringify(big))],
    [topics.telemetry(DEVICE), Buffer.from(JSON.stringify(mixed))],
    [topics.telemetry(DEVICE), Buffer.from('{"batchId": 1, "records": [')],
    [`devices/${DEVICE}/status`, Buffer.from('{}')],
  ];
}

describe('the parse worker pool', () => {
  it('reads every message as parseTelemetryMessage does, on two workers at once, with the SQL tuples of the rows', async () => {
    const { logger } = capturedLogger();
    pool = startParsePool({ workers: 2, logger });
    const inputs = [...messages(), ...messages(), ...messages()];
    // a payload that is a view into a larger buffer: only the view is read, the buffer stays usable
    const shared = Buffer.concat([Buffer.from('xxxx'), inputs[0]![1], Buffer.from('yyyy')]);
    inputs.push([inputs[0]![0], shared.subarray(4, shared.length - 4)]);
    const results = await Promise.all(inputs.map(([topic, payload]) => pool!.parse(topic, payload)));
    results.forEach((result, index) => {
      const [topic, payload] = inputs[index]!;
      expect(result).toEqual(parseTelemetryMessage(topic, payload));
    });
    expect(shared.subarray(0, 4).toString()).toBe('xxxx');
    const first = results[0]!;
    if (first.kind !== 'batch') throw new Error('expected a batch');
    expect(first.records).toHaveLength(300);
    // the rows come with their tuples: the writer takes them as they are
    const again = parseTelemetryMessage(inputs[0]![0], inputs[0]![1]);
    if (again.kind !== 'batch') throw new Error('expected a batch');
    expect(first.records.map(telemetryTuple)).toEqual(again.records.map(telemetryTuple));
    const row = first.records[0]!;
    const tuple = telemetryTuple(row);
    (row as { value: number }).value = -1; // never done outside this test: a parsed row does not change
    expect(telemetryTuple(row)).toBe(tuple); // the worker's tuple, not formatted again on the event loop
  });

  it('still reads every message, on the event loop, when its worker fails, and says so once', async () => {
    const log = capturedLogger();
    pool = startParsePool({
      workers: 1,
      logger: log.logger,
      entry: new URL('../helpers/failing-parse-worker.ts', import.meta.url).href,
    });
    const inputs = messages();
    const results = await Promise.all(inputs.map(([topic, payload]) => pool!.parse(topic, payload)));
    results.forEach((result, index) => expect(result).toEqual(parseTelemetryMessage(...inputs[index]!)));
    await expect.poll(() => log.lines.filter((line) => line.msg.startsWith('parse worker lost')).length).toBe(1);
    // later messages too
    expect(await pool.parse(...inputs[1]!)).toEqual(parseTelemetryMessage(...inputs[1]!));
  });

  it('reads messages on the event loop after close(), which is idempotent', async () => {
    const { logger } = capturedLogger();
    pool = startParsePool({ workers: 1, logger });
    await Promise.all([pool.close(), pool.close()]);
    const [topic, payload] = messages()[1]!;
    expect(await pool.parse(topic, payload)).toEqual(parseTelemetryMessage(topic, payload));
  });
});
