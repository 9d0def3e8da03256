import { describe, expect, it } from 'vitest';
import { planReconcile } from '../../bridge/downstream/reconcile-plan.js';
import { RetainedPublisher, compareOrder } from '../../bridge/downstream/retained-publisher.js';
import { testLogger } from '../helpers/logger.js';

const D = '3b0f6c1e-8a2d-4e7f-9b1c-2d3e4f5a6b7c';
const cmd = (id: string) => `devices/${D}/commands/${id}`;
const cfg = (key: string) => `devices/${D}/config/${key}`;

describe('planReconcile', () => {
  it('publishes what is missing or different, clears what the database has not live, and leaves the rest', () => {
    const retained = new Map([
      [cmd('same'), '{"s":1}'],
      [cmd('stale'), '{"s":0}'],
      [cmd('gone'), '{"s":1}'],
      [cfg('gone'), '{"v":1}'],
      [`devices/${D}/status`, '{"online":true}'],
    ]);
    const desired = new Map([
      [cmd('same'), { payload: '{"s":1}', order: [0] }],
      [cmd('stale'), { payload: '{"s":1}', order: [1] }],
      [cmd('missing'), { payload: '{"s":0}', order: [0] }],
      [cfg('missing'), { payload: '{"v":2}', order: [2, 0, 0] }],
    ]);
    const actions = planReconcile(retained, desired, (kind) => (kind === 'command' ? [3] : [0, 0, 0]));
    expect(actions).toEqual([
      { topic: cmd('stale'), payload: '{"s":1}', order: [1], kind: 'command' },
      { topic: cmd('missing'), payload: '{"s":0}', order: [0], kind: 'command' },
      { topic: cfg('missing'), payload: '{"v":2}', order: [2, 0, 0], kind: 'config' },
      { topic: cmd('gone'), payload: '', order: [3], kind: 'command' },
      { topic: cfg('gone'), payload: '', order: [0, 0, 0], kind: 'config' },
    ]);
  });

  it('plans nothing when the retained store matches the database', () => {
    const desired = new Map([[cmd('a'), { payload: 'x', order: [0] }]]);
    expect(planReconcile(new Map([[cmd('a'), 'x']]), desired, () => [0])).toEqual([]);
  });
});

describe('RetainedPublisher', () => {
  it('publishes one topic in call order and never an older state after a newer one, but the same state again', async () => {
    const sent: string[] = [];
    let release: (() => void) | undefined;
    let calls = 0;
    const publisher = new RetainedPublisher({
      logger: testLogger('publisher'),
      publish: async (topic, payload) => {
        calls += 1;
        if (calls === 1) await new Promise<void>((resolve) => (release = resolve));
        sent.push(`${topic}=${payload}`);
      },
    });
    const first = publisher.publish('t', 'executing', [2]);
    const stale = publisher.publish('t', 'pending', [0]);
    const again = publisher.publish('t', 'executing', [2]);
    const other = publisher.publish('u', 'pending', [0]);
    await other;
    expect(sent).toEqual(['u=pending']);
    release?.();
    await Promise.all([first, stale, again]);
    expect(sent).toEqual(['u=pending', 't=executing', 't=executing']);
    expect(publisher.lastPayload('t')).toBe('executing');
  });

  it('logs a failed publish instead of rejecting, and forgets topics after its memory window', async () => {
    let nowMs = 0;
    const publisher = new RetainedPublisher({
      logger: testLogger('publisher'),
      now: () => nowMs,
      memoryMs: 1000,
      publish: (_topic, payload) => (payload === 'fail' ? Promise.reject(new Error('offline')) : Promise.resolve()),
    });
    await expect(publisher.publish('t', 'fail', [5])).resolves.toBeUndefined();
    await publisher.publish('t', 'high', [5]);
    nowMs = 5000;
    await publisher.publish('x', 'other', [0]); // prunes
    await publisher.publish('t', 'low', [1]);
    expect(publisher.lastPayload('t')).toBe('low');
  });

  it('compares orders element by element', () => {
    expect(compareOrder([3, 0, 2], [3, 1, 0])).toBeLessThan(0);
    expect(compareOrder([4], [3, 9, 9])).toBeGreaterThan(0);
    expect(compareOrder([2, 0, 0], [2])).toBe(0);
  });
});
