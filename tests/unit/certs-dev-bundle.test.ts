import { readTlsFiles } from '../../common/tls-files.js';
import { copyFile, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCertificates, type CertificateBundle } from '../../certs/dev-bundle.js';
import { isIssuedBy, summarizeCertificate } from '../../certs/inspect.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const DEVICE_A = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const DEVICE_B = '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c';

let root: string;
let dir: string;
let bundle: CertificateBundle;

beforeAll(async () => {
  root = tempDirectory('certs-dev-bundle-test');
  dir = join(root, 'dev');
  bundle = await ensureDevCertificates({
    dir,
    deviceIds: [DEVICE_A],
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
    brokerHosts: ['localhost', '127.0.0.1'],
  });
});

describe('ensureDevCertificates', () => {
  it('lays out the bundle and returns the paths', () => {
    expect(bundle).toEqual({
      dir,
      ca: { certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') },
      broker: { certPath: join(dir, 'broker.crt'), keyPath: join(dir, 'broker.key') },
      services: { bridge: { certPath: join(dir, 'services/bridge.crt'), keyPath: join(dir, 'services/bridge.key') } },
      devices: {
        [DEVICE_A]: { certPath: join(dir, `devices/${DEVICE_A}.crt`), keyPath: join(dir, `devices/${DEVICE_A}.key`) },
      },
      observers: {
        explorer: { certPath: join(dir, 'observers/explorer.crt'), keyPath: join(dir, 'observers/explorer.key') },
      },
      operators: {},
    });
  });

  it('writes every key with mode 0600', async () => {
    const keys = [
      bundle.ca,
      bundle.broker,
      bundle.services.bridge!,
      bundle.devices[DEVICE_A]!,
      bundle.observers.explorer!,
    ];
    for (const { keyPath } of keys) {
      expect((await stat(keyPath)).mode & 0o777, keyPath).toBe(0o600);
    }
  });

  it('issues each certificate from the bundle CA with the right subject', async () => {
    const caPem = await readFile(bundle.ca.certPath);
    const device = await readFile(bundle.devices[DEVICE_A]!.certPath);
    expect(isIssuedBy(device, caPem)).toBe(true);
    expect(summarizeCertificate(device)).toMatchObject({ commonName: DEVICE_A, organizationalUnit: 'device' });
    expect(summarizeCertificate(await readFile(bundle.services.bridge!.certPath))).toMatchObject({
      commonName: 'bridge',
      organizationalUnit: 'service',
    });
    expect(summarizeCertificate(await readFile(bundle.observers.explorer!.certPath))).toMatchObject({
      commonName: 'explorer',
      organizationalUnit: 'observer',
    });
    expect(summarizeCertificate(await readFile(bundle.broker.certPath)).subjectAltNames).toEqual([
      'DNS:localhost',
      'IP Address:127.0.0.1',
    ]);
  });

  it('is idempotent: existing files are reused and only missing ones are issued', async () => {
    const before = await readFile(bundle.devices[DEVICE_A]!.certPath, 'utf8');
    const caBefore = await readFile(bundle.ca.certPath, 'utf8');
    const again = await ensureDevCertificates({
      dir,
      deviceIds: [DEVICE_A, DEVICE_B],
      serviceNames: ['bridge'],
      brokerHosts: ['127.0.0.1'],
    });
    expect(await readFile(again.devices[DEVICE_A]!.certPath, 'utf8')).toBe(before);
    expect(await readFile(again.ca.certPath, 'utf8')).toBe(caBefore);
    const deviceB = await readFile(again.devices[DEVICE_B]!.certPath);
    expect(isIssuedBy(deviceB, caBefore)).toBe(true);
  });

  it('refuses invalid device ids and file-unsafe names before writing anything', async () => {
    await expect(ensureDevCertificates({ dir, deviceIds: ['device-1'] })).rejects.toThrow(
      "device id 'device-1' is not a lowercase UUID",
    );
    await expect(ensureDevCertificates({ dir, deviceIds: [], serviceNames: ['../escape'] })).rejects.toThrow(
      "service name '../escape' must be 1-64 characters",
    );
  });

  it('refuses a broker certificate that does not cover a requested host', async () => {
    await expect(ensureDevCertificates({ dir, brokerHosts: ['broker.example.com'] })).rejects.toThrow(
      `${bundle.broker.certPath} does not cover broker.example.com`,
    );
  });

  it('refuses a certificate issued by another CA instead of silently replacing it', async () => {
    const otherDir = join(root, 'other');
    const other = await ensureDevCertificates({ dir: otherDir, deviceIds: [], observerNames: ['foreign'] });
    await copyFile(other.observers.foreign!.certPath, join(dir, 'observers/foreign.crt'));
    await copyFile(other.observers.foreign!.keyPath, join(dir, 'observers/foreign.key'));
    await expect(ensureDevCertificates({ dir, observerNames: ['foreign'] })).rejects.toThrow(
      `${join(dir, 'observers/foreign.crt')} was not issued by ${bundle.ca.certPath}`,
    );
  });

  it('refuses a certificate whose key is missing', async () => {
    await unlink(bundle.observers.explorer!.keyPath);
    await expect(ensureDevCertificates({ dir, observerNames: ['explorer'] })).rejects.toThrow(
      `found ${bundle.observers.explorer!.certPath} but not ${bundle.observers.explorer!.keyPath}`,
    );
  });
});

describe('readTlsFiles (common/tls-files.ts) on a dev bundle', () => {
  it('loads the CA, certificate and key as buffers', () => {
    const material = readTlsFiles({ caPath: bundle.ca.certPath, ...bundle.services.bridge! });
    expect(material.ca.toString()).toContain('BEGIN CERTIFICATE');
    expect(material.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(material.key.toString()).toContain('PRIVATE KEY');
  });

  it('names the missing file', () => {
    const missing = join(root, 'nope.key');
    expect(() =>
      readTlsFiles({ caPath: bundle.ca.certPath, certPath: bundle.broker.certPath, keyPath: missing }),
    ).toThrow(`private key: cannot read '${missing}': ENOENT`);
  });
});
