import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { EventCounter, rateLimitedLog } from '../../common/rate-limited-log.js';

describe('EventCounter', () => {
  it('reports the first event at once and counts the rest of the interval into one line', () => {
    const counter = new EventCounter<{ n: number }>(10_000);
    expect(counter.note('rejected', { n: 1 }, 0)).toMatchObject({ count: 1, sample: { n: 1 } });
    for (let n = 2; n <= 2000; n += 1) expect(counter.note('rejected', { n }, n)).toBeNull();
    expect(counter.due(9_999)).toEqual([]);
    expect(counter.due(10_000)).toEqual([
      { key: 'rejected', count: 1999, sample: { n: 2 }, firstAtMs: 2, lastAtMs: 2000 },
    ]);
    expect(counter.due(20_000)).toEqual([]); // nothing counted since
  });

  it('logs the first event after a quiet interval at once again', () => {
    const counter = new EventCounter<string>(1_000);
    expect(counter.note('full', 'a', 0)).not.toBeNull();
    expect(counter.note('full', 'b', 500)).toBeNull();
    expect(counter.due(1_000)).toHaveLength(1);
    expect(counter.note('full', 'c', 2_500)).toMatchObject({ count: 1, sample: 'c' });
  });

  it('counts each kind of event on its own', () => {
    const counter = new EventCounter<string>(1_000);
    expect(counter.note('a', 'x', 0)).not.toBeNull();
    expect(counter.note('b', 'y', 1)).not.toBeNull();
    expect(counter.note('a', 'x', 2)).toBeNull();
    expect(counter.flush(3)).toEqual([{ key: 'a', count: 1, sample: 'x', firstAtMs: 2, lastAtMs: 2 }]);
  });
});

describe('rateLimitedLog', () => {
  it('writes one line for the first event and one with the count at close, not one per event', () => {
    const lines: { msg: string; count: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string; count: number });
        done();
      },
    });
    let nowMs = 0;
    const log = rateLimitedLog<{ topic: string }>(pino({ level: 'info' }, sink), {
      intervalMs: 60_000,
      level: 'warn',
      message: (summary) => `rejected ${summary.count} readings`,
      now: () => nowMs,
    });
    for (let i = 0; i < 500; i += 1) {
      nowMs = i;
      log.note('rejected', { topic: `sensors/s${i}/t` });
    }
    log.close();
    log.close();
    expect(lines.map((line) => [line.msg, line.count])).toEqual([
      ['rejected 1 readings', 1],
      ['rejected 499 readings', 499],
    ]);
  });
});
