/**
 * agent.logLevel (G6) reaches every component logger: pino 10 children keep the level they were
 * created with, so edge/log-level.ts sets it on the whole family.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { liveLogLevel } from '../../edge/log-level.js';

describe('live log level', () => {
  it('changes the level of the agent logger and of children made before and after, at any depth', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const agent = pino({ level: 'info' }, sink);
    const setLevel = liveLogLevel(agent);
    const uplink = agent.child({ component: 'uplink' });
    const nested = uplink.child({ batch: 1 });
    uplink.debug('hidden');
    setLevel('debug');
    const later = agent.child({ component: 'later' });
    for (const logger of [agent, uplink, nested, later]) expect(logger.level).toBe('debug');
    nested.debug('shown');
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['shown']);
    setLevel('warn');
    expect(later.level).toBe('warn');
  });
});
