/**
 * Sensor passwords (scrypt, constant-time comparison), the users file and the sensor-user CLI,
 * without a listener.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_SCRYPT_PARAMS,
  formatPasswordHash,
  hashPassword,
  hashPasswordSync,
  parsePasswordHash,
  verifyPassword,
  type PasswordHash,
} from '../../edge/ingest/sensor-passwords.js';
import { formatSensorUserLine, parseSensorUsers, type SensorUser } from '../../edge/ingest/sensor-users.js';
import { runSensorUserCli } from '../../edge/sensor-user.js';

const FAST = { ln: 10, r: 8, p: 1 };
const directory = mkdtempSync(join(tmpdir(), 'sensor-credentials-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function parsed(text: string): PasswordHash {
  const result = parsePasswordHash(text);
  if ('error' in result) throw new Error(result.error);
  return result;
}

describe('sensor passwords', () => {
  it("hashes with node's scrypt defaults and a random salt, and verifies only the right password", async () => {
    const first = await hashPassword('correct horse');
    const second = await hashPassword('correct horse');
    expect(first.params).toEqual(DEFAULT_SCRYPT_PARAMS);
    expect(first.salt.equals(second.salt)).toBe(false);
    expect(first.hash.equals(second.hash)).toBe(false);
    expect(await verifyPassword('correct horse', first)).toBe(true);
    expect(await verifyPassword('correct horse', second)).toBe(true);
    expect(await verifyPassword('correct hors', first)).toBe(false);
    expect(await verifyPassword('correct horse ', first)).toBe(false);
    expect(await verifyPassword('', first)).toBe(false);
  });

  it('round-trips through its text form, which has no colon (the users file separator)', async () => {
    const hash = await hashPassword('pässwörd', FAST);
    const text = formatPasswordHash(hash);
    expect(text).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(text).not.toContain(':');
    expect(await verifyPassword(Buffer.from('pässwörd'), parsed(text))).toBe(true);
    expect(await verifyPassword('pässwörd', hashPasswordSync('pässwörd', FAST))).toBe(true);
  });

  it('refuses malformed hashes and parameters that would cost too much, without quoting the hash', () => {
    const good = formatPasswordHash(hashPasswordSync('x', FAST));
    const cases: [string, RegExp][] = [
      ['plain-text-password', /not of the form/],
      [good.replace('$scrypt$', '$argon2id$'), /not of the form/],
      [good.replace('ln=10', 'N=1024'), /parameters are not/],
      [good.replace('ln=10', 'ln=30'), /ln must be an integer from 10 to 20/],
      [good.replace('ln=10', 'ln=9'), /ln must be an integer from 10 to 20/],
      [good.replace('r=8', 'r=33'), /r must be an integer from 1 to 32/],
      [good.replace('ln=10,r=8', 'ln=20,r=32'), /need more than 256 MiB/],
      [`${good}=`, /base64 without padding/],
      [good.replace(/\$[^$]+$/, '$AAAA'), /must be 16 to 64 bytes/],
    ];
    for (const [text, reason] of cases) {
      const result = parsePasswordHash(text);
      expect(result, text).toEqual({ error: expect.stringMatching(reason) });
      expect((result as { error: string }).error).not.toContain(text);
    }
  });
});

describe('sensor users file', () => {
  const hash = formatPasswordHash(hashPasswordSync('secret', FAST));

  it('reads NAME:HASH[:ROLE[:SENSORS]] lines with their defaults, skipping comments and blank lines', () => {
    const result = parseSensorUsers(
      [
        '# sensors of boiler room 1',
        `boiler:${hash}`,
        '',
        `dashboard:${hash}:reader`,
        `ops@site.example:${hash}:both:+`,
        `  b1only:${hash}:publisher:b1,b1,b-2.x:y  `,
      ].join('\r\n'),
    );
    if ('error' in result) throw new Error(result.error);
    expect(result.users.map(({ name, role, sensors }) => ({ name, role, sensors }))).toEqual([
      { name: 'boiler', role: 'publisher', sensors: 'any' },
      { name: 'dashboard', role: 'reader', sensors: 'any' },
      { name: 'ops@site.example', role: 'both', sensors: 'any' },
      { name: 'b1only', role: 'publisher', sensors: ['b1', 'b-2.x:y'] },
    ]);
  });

  it('writes lines it reads back', () => {
    const user: SensorUser = { name: 'b1only', password: parsed(hash), role: 'both', sensors: ['b1', 'b2'] };
    const line = formatSensorUserLine(user);
    expect(line).toBe(`b1only:${hash}:both:b1,b2`);
    expect(parseSensorUsers(line)).toEqual({ users: [user] });
  });

  it('names the line of an error and never quotes the hash', () => {
    const cases: [string, string][] = [
      [`boiler:${hash}\nbad name:${hash}`, 'line 2: the user name must be 1-64 characters of A-Z a-z 0-9 _ . @ -'],
      [`boiler:${hash}\nboiler:${hash}`, "line 2: user 'boiler' appears twice"],
      [`boiler:${hash}:admin`, "line 1 (user 'boiler'): the role must be one of publisher, reader, both, app"],
      [`boiler:${hash}:both:b/1`, "line 1 (user 'boiler'): sensor ids must be '+' or a comma-separated list"],
      [`boiler:${hash}:both:+:extra`, "line 1 (user 'boiler'): sensor ids must be '+' or a comma-separated list"],
      ['boiler:secret', "line 1 (user 'boiler'): the password hash is not of the form"],
      ['# nobody\n\n', 'no users in the file'],
    ];
    for (const [text, message] of cases) {
      const result = parseSensorUsers(text);
      expect(result, text).toEqual({ error: expect.stringContaining(message) });
      expect((result as { error: string }).error).not.toContain(hash);
      expect((result as { error: string }).error).not.toContain('secret');
    }
  });
});

describe('npm run sensor-user', () => {
  async function run(args: string[], stdin = '') {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runSensorUserCli(args, {
      log: (line) => out.push(line),
      error: (line) => err.push(line),
      readStdin: () => Promise.resolve(stdin),
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  async function verifies(line: string, password: string): Promise<SensorUser> {
    const result = parseSensorUsers(line);
    if ('error' in result) throw new Error(result.error);
    const [user] = result.users;
    expect(await verifyPassword(password, user!.password)).toBe(true);
    return user!;
  }

  it('prints a users-file line for a password read from standard input', async () => {
    const result = await run(['boiler', '--role', 'both', '--sensors', 'b1,b2', '--cost', '10'], 'hunter2\n');
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(result.out).toMatch(/^boiler:\$scrypt\$ln=10,r=8,p=1\$[^:]+:both:b1,b2$/);
    expect(result.out).not.toContain('hunter2');
    expect(await verifies(result.out, 'hunter2')).toMatchObject({ role: 'both', sensors: ['b1', 'b2'] });
  });

  it('creates a missing password file with a random password (mode 0600) and reuses an existing one', async () => {
    const file = join(directory, 'sim.password');
    const first = await run(['sim', '--password-file', file, '--create', '--cost', '10']);
    expect(first.code).toBe(0);
    const password = readFileSync(file, 'utf8').trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await verifies(first.out, password)).toMatchObject({ name: 'sim', role: 'publisher', sensors: 'any' });

    const second = await run(['sim', '--password-file', file, '--create', '--cost', '10']);
    expect(readFileSync(file, 'utf8').trim()).toBe(password);
    await verifies(second.out, password);
  });

  it('uses the first line of an existing password file', async () => {
    const file = join(directory, 'given.password');
    writeFileSync(file, 'first line\nsecond line\n');
    const result = await run(['given', '--password-file', file, '--cost', '10']);
    await verifies(result.out, 'first line');
  });

  it('refuses bad arguments with the usage, and an empty password', async () => {
    expect(await run([])).toMatchObject({ code: 2, err: expect.stringContaining('give exactly one user NAME') });
    expect(await run(['a:b'], 'x')).toMatchObject({ code: 2, err: expect.stringContaining("got 'a:b'") });
    expect(await run(['u', '--role', 'admin'], 'x')).toMatchObject({
      code: 2,
      err: expect.stringContaining("--role must be one of publisher, reader, both, app, got 'admin'"),
    });
    expect(await run(['u', '--sensors', 'a/b'], 'x')).toMatchObject({
      code: 2,
      err: expect.stringContaining('--sensors'),
    });
    expect(await run(['u', '--cost', '40'], 'x')).toMatchObject({
      code: 2,
      err: expect.stringContaining('--cost: ln must be an integer from 10 to 20'),
    });
    expect(await run(['u', '--create'], 'x')).toMatchObject({
      code: 2,
      err: expect.stringContaining('--password-file'),
    });
    expect(await run(['u', '--cost', '10'], '\nx')).toMatchObject({
      code: 1,
      err: 'error: the password is empty (standard input)',
    });
    expect((await run(['--help'])).out).toMatch(/^usage: npm run -s sensor-user/);
  });
});
