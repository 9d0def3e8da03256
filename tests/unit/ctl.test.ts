/** ctl's pure parts: exit codes by HTTP status, tables, durations, and usage errors before any request. */
import { describe, expect, it } from 'vitest';
import { runCtl } from '../../ctl/cli.js';
import { parseDuration } from '../../ctl/duration.js';
import { EXIT, exitCodeForStatus } from '../../ctl/exit-codes.js';
import { keyValues, table } from '../../ctl/format.js';

describe('exitCodeForStatus', () => {
  it.each([
    [200, EXIT.ok],
    [201, EXIT.ok],
    [400, EXIT.rejected],
    [413, EXIT.rejected],
    [415, EXIT.rejected],
    [422, EXIT.rejected],
    [401, EXIT.forbidden],
    [403, EXIT.forbidden],
    [404, EXIT.notFound],
    [409, EXIT.conflict],
    [500, EXIT.server],
    [503, EXIT.server],
  ])('%i → %i', (status, code) => expect(exitCodeForStatus(status)).toBe(code));
});

describe('table', () => {
  it('aligns columns, shows missing values as -, and trims trailing spaces', () => {
    expect(
      table(
        ['A', 'LONGER'],
        [
          ['x', null],
          ['yyyy', 3],
        ],
      ),
    ).toBe('A     LONGER\nx     -\nyyyy  3');
    expect(
      keyValues([
        ['status', 'ok'],
        ['pendingCommands', 0],
      ]),
    ).toBe('status:           ok\npendingCommands:  0');
  });
});

describe('parseDuration', () => {
  it.each([
    ['90s', 90_000],
    ['10m', 600_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['250', 250],
    ['10x', null],
    ['-1m', null],
    ['0s', null],
  ])('%s → %s', (text, ms) => expect(parseDuration(text)).toBe(ms));
});

describe('runCtl usage errors (exit 1, nothing sent)', () => {
  const out = () => {
    const lines: string[] = [];
    return { lines, output: { log: (t: string) => lines.push(t), error: (t: string) => lines.push(t) } };
  };
  it('refuses unknown options and a missing certificate, naming what is missing', async () => {
    const first = out();
    expect(await runCtl(['devices', '--bogus'], {}, first.output)).toBe(EXIT.usage);
    const second = out();
    expect(await runCtl(['devices'], { CTL_URL: 'https://127.0.0.1:1' }, second.output)).toBe(EXIT.usage);
    expect(second.lines.join('\n')).toContain('CTL_CA (or --ca) is required');
    const third = out();
    expect(await runCtl(['devices'], { CTL_URL: 'http://x' }, third.output)).toBe(EXIT.usage);
    expect(third.lines.join('\n')).toContain("CTL_URL must be an https:// URL, got 'http://x'");
  });
});
