/** The test kit's teardown registry (tests/helpers/teardown.ts): cleanups run when their test ends, newest first, once. */
import { describe, expect, it } from 'vitest';
import { registerCleanup } from '../helpers/teardown.js';

describe('registerCleanup inside a test', () => {
  const ran: string[] = [];
  let earlyRuns = 0;

  it('defers every cleanup to the end of the test', () => {
    registerCleanup(() => ran.push('server'));
    registerCleanup(() => ran.push('client'));
    expect(ran).toEqual([]);
  });

  it('ran them once that test had finished, the newest first', () => {
    expect(ran).toEqual(['client', 'server']);
  });

  it('runs a cleanup called early only once, also at teardown', async () => {
    const cleanup = registerCleanup(() => {
      earlyRuns += 1;
    });
    await Promise.all([cleanup(), cleanup()]);
    expect(earlyRuns).toBe(1);
  });

  it('did not run it again when that test finished', () => {
    expect(earlyRuns).toBe(1);
  });
});
