import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCertificateCli } from '../../certs/cli.js';
import { isDeviceId } from '../../schemas/topics.js';
import { tempDirectory } from '../helpers/temp-dir.js';

let root: string;

beforeAll(() => {
  root = tempDirectory('certs-cli-test');
});

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCertificateCli(argv, { log: (line) => out.push(line), error: (line) => err.push(line) }, {});
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('certs/cli.ts', () => {
  it('refuses a device id that is not a UUID', async () => {
    const result = await run('device', '--id', 'not-a-uuid', '--dir', join(root, 'a'));
    expect(result.code).toBe(1);
    expect(result.err).toContain("device id 'not-a-uuid' is not a lowercase UUID");
  });

  it('says to run init when there is no CA', async () => {
    const result = await run('service', '--name', 'bridge', '--dir', join(root, 'empty'));
    expect(result.code).toBe(1);
    expect(result.err).toContain('no certificate authority in');
    expect(result.err).toContain("run the 'init' command first");
    await expect(access(join(root, 'empty'))).rejects.toThrow();
  });

  it('requires --name for services and observers', async () => {
    expect(await run('observer', '--dir', join(root, 'a'))).toMatchObject({
      code: 1,
      err: 'error: --name is required',
    });
  });

  it('init, then a device with a generated id, then inspect', async () => {
    const dir = join(root, 'flow');
    expect((await run('init', '--dir', dir)).out).toMatch(/^created certificate authority/);
    expect((await run('init', '--dir', dir)).out).toMatch(/^kept existing certificate authority/);

    const device = await run('device', '--dir', dir);
    expect(device.code).toBe(0);
    const id = /device id: (\S+)/.exec(device.out)?.[1] ?? '';
    expect(isDeviceId(id)).toBe(true);

    const inspected = await run('inspect', join(dir, 'devices', `${id}.crt`));
    expect(inspected.code).toBe(0);
    expect(inspected.out).toContain(`CN:         ${id}`);
    expect(inspected.out).toContain('OU (role):  device');
    expect(inspected.out).toContain('usage:      clientAuth');
  });

  it('issues an operator certificate (OU operator) under operators/', async () => {
    const dir = join(root, 'operators');
    expect((await run('init', '--dir', dir)).code).toBe(0);
    const issued = await run('operator', '--name', 'alice', '--dir', dir);
    expect(issued.code).toBe(0);
    const inspected = await run('inspect', join(dir, 'operators', 'alice.crt'));
    expect(inspected.out).toContain('CN:         alice');
    expect(inspected.out).toContain('OU (role):  operator');
    expect(await run('operator', '--dir', dir)).toMatchObject({ code: 1, err: 'error: --name is required' });
  });

  it("issues the REST API's server certificate (serverAuth) for the given hosts", async () => {
    const dir = join(root, 'api');
    expect((await run('init', '--dir', dir)).code).toBe(0);
    expect((await run('api', '--host', 'bridge', '--host', '127.0.0.1', '--dir', dir)).code).toBe(0);
    const inspected = await run('inspect', join(dir, 'api.crt'));
    expect(inspected.out).toContain('CN:         mqtt-edge-sync api');
    expect(inspected.out).toContain('usage:      serverAuth');
    expect(inspected.out).toMatch(/bridge/);
    expect((await run('api', '--host', 'other', '--dir', dir)).code).toBe(1);
  });

  it('reports usage errors with exit code 2', async () => {
    expect((await run('frobnicate')).code).toBe(2);
    expect((await run('init', '--bogus')).code).toBe(2);
    expect(await run('inspect', join(root, 'missing.crt'))).toMatchObject({
      code: 1,
      err: expect.stringContaining('ENOENT'),
    });
  });

  describe('revocation commands', () => {
    it('revoke needs exactly one of --serial and --cert, and a serial that is hexadecimal', async () => {
      expect(await run('revoke', '--dir', join(root, 'a'))).toMatchObject({
        code: 1,
        err: 'error: revoke needs exactly one of --serial HEX and --cert FILE',
      });
      expect(await run('revoke', '--serial', '0a', '--cert', 'x.crt')).toMatchObject({ code: 1 });
      expect(await run('revoke', '--serial', 'not-hex', '--cn', 'x')).toMatchObject({
        code: 1,
        err: "error: --serial 'not-hex' is not a hexadecimal certificate serial number",
      });
    });

    it('revoke --serial without --cn looks the certificate up under --dir, and says so when it is not there', async () => {
      const dir = join(root, 'revoke-lookup');
      await run('init', '--dir', dir);
      expect(await run('revoke', '--serial', '0a:0b', '--dir', dir)).toMatchObject({
        code: 1,
        err: `error: no certificate with serial a0b under ${dir}: give its common name with --cn NAME`,
      });
    });

    it('revoke, revocations and crl need DATABASE_URL', async () => {
      expect(await run('revoke', '--serial', '0a', '--cn', 'x')).toMatchObject({
        code: 1,
        err: "error: revoke needs DATABASE_URL: the control plane's database (postgres://…)",
      });
      expect(await run('revocations')).toMatchObject({
        code: 1,
        err: expect.stringContaining('revocations needs DATABASE_URL'),
      });
    });

    it('crl needs --out', async () => {
      expect(await run('crl')).toMatchObject({ code: 1, err: 'error: crl needs --out FILE' });
    });
  });
});
