/**
 * What docker-compose.yml gives each container, checked without a Docker engine:
 *
 * - only the `certs` job mounts the certificate authority (the CA key and every issued pair);
 * - every other service that mounts certificates mounts exactly one folder of
 *   ./certs/compose/issued, its own, read-only — so a taken-over edge container holds its own
 *   device key and the CA certificate, nothing that can mint a certificate or pose as the bridge;
 * - the `certs` job's own script, run here for real (paths remapped into a temporary folder),
 *   fills each issued folder with the CA certificate and the pair of the identity that folder is
 *   for (checked by CN and role in the certificate, and by the key matching it), keys mode 0600,
 *   and no CA key anywhere outside the authority folder;
 * - the TLS variables of every service point at files that exist in its own folder;
 * - the bridge's folder also holds the REST API's server certificate (api.crt, api.key: serverAuth
 *   for the host name `bridge`), and the operator's folder the `admin` operator pair, which no
 *   container mounts (it is for ctl on the host);
 * - the simulated sensors' password folder is mounted into the sensor containers only, and each
 *   edge agent gets the users file (scrypt hashes) in its own folder.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import yaml from 'js-yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { summarizeCertificate } from '../../certs/inspect.js';
import { tempDirectory } from '../helpers/temp-dir.js';

interface ComposeService {
  command?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
}

const root = join(import.meta.dirname, '..', '..');
const compose = yaml.load(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, ComposeService>;
};
const services = compose.services;

const AUTHORITY = './certs/compose/authority';
const SENSOR_SECRETS = './certs/compose/sensors';
const isSensorSimulator = (name: string) => /^sensors-\d+$/.test(name);

/** The identity each issued folder must hold: CN and role (OU; the broker's server certificate has none). */
const EXPECTED_IDENTITY: Record<string, { commonName: string; role: string | null }> = {
  broker: { commonName: 'mqtt-edge-sync broker', role: null },
  bridge: { commonName: 'bridge', role: 'service' },
  explorer: { commonName: 'explorer', role: 'observer' },
  'edge-1': { commonName: '0b6f3a52-7c1e-4d0a-9f5b-2e8c4a1d7e31', role: 'device' },
  'edge-2': { commonName: '5d2e9c84-3b7a-4f61-8a0e-c41f6b9d2a75', role: 'device' },
  operator: { commonName: 'admin', role: 'operator' },
};

/** Extra pairs a folder holds besides ca.crt and tls.crt/tls.key. */
const EXTRA_PAIRS: Record<string, string[]> = { bridge: ['api'] };

function bindMounts(service: ComposeService): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? [])
    .map((volume) => volume.split(':'))
    .filter(([source]) => source !== undefined && source.startsWith('.'))
    .map(([source, target, mode]) => ({ source: source!, target: target!, readOnly: mode === 'ro' }));
}

const certificateMounts = (service: ComposeService) =>
  bindMounts(service).filter((mount) => mount.source.startsWith('./certs') && mount.source !== SENSOR_SECRETS);

describe('docker-compose.yml certificate mounts', () => {
  it('mounts the certificate authority into the certs job only', () => {
    const holders = Object.entries(services)
      .filter(([, service]) =>
        bindMounts(service).some((mount) => AUTHORITY.startsWith(mount.source.replace(/\/$/, ''))),
      )
      .map(([name]) => name);
    expect(holders).toEqual(['certs']);
  });

  it('gives every other service at most one issued folder, its own, read-only', () => {
    const seen = new Map<string, string>();
    for (const [name, service] of Object.entries(services)) {
      if (name === 'certs') continue;
      const mounts = certificateMounts(service);
      expect(mounts.length, name).toBeLessThanOrEqual(1);
      for (const mount of mounts) {
        expect(mount.source, name).toMatch(/^\.\/certs\/compose\/issued\/[a-z0-9-]+$/);
        expect(mount.readOnly, `${name} mounts ${mount.source} writable`).toBe(true);
        const folder = posix.basename(mount.source);
        // the two broker nodes share the broker identity; no other folder is shared
        if (seen.has(folder)) expect([seen.get(folder), name].sort(), folder).toEqual(['broker1', 'broker2']);
        seen.set(folder, name);
      }
    }
    expect([...seen.keys()].sort()).toEqual(['bridge', 'broker', 'edge-1', 'edge-2']);
  });

  it("mounts the sensors' password folder into the sensor simulators only, read-only", () => {
    for (const [name, service] of Object.entries(services)) {
      if (name === 'certs') continue;
      const secrets = bindMounts(service).filter((mount) => mount.source === SENSOR_SECRETS);
      if (isSensorSimulator(name)) {
        expect(
          secrets.map((mount) => mount.readOnly),
          name,
        ).toEqual([true]);
        expect(certificateMounts(service), `${name} needs no certificate`).toEqual([]);
      } else {
        expect(secrets, name).toEqual([]);
      }
    }
  });
});

describe("the certs job's script", () => {
  let work: string;

  beforeAll(() => {
    work = tempDirectory('compose-certs');
    const command = services['certs']?.command;
    const script = (Array.isArray(command) ? command.join('\n') : (command ?? ''))
      .replaceAll('$$', '$') // compose's escape for a literal $
      .replaceAll('/authority', join(work, 'authority'))
      .replaceAll('/issued', join(work, 'issued'))
      .replaceAll('/sensor-secrets', join(work, 'sensor-secrets'))
      // the image's node user does not exist here; ownership is not what this test checks
      .replace(/chown -R node:node [^;]+;/, '');
    mkdirSync(join(work, 'sensor-secrets'));
    expect(script).toContain('cli init');
    execFileSync('/bin/sh', ['-c', script], { cwd: root, stdio: 'pipe', timeout: 60_000 });
  }, 90_000);

  it('issues one folder per identity with the CA certificate and that identity’s pair', () => {
    const issued = join(work, 'issued');
    expect(readdirSync(issued).sort()).toEqual(Object.keys(EXPECTED_IDENTITY).sort());
    const caPem = readFileSync(join(work, 'authority', 'ca.crt'));
    for (const [folder, identity] of Object.entries(EXPECTED_IDENTITY)) {
      const dir = join(issued, folder);
      const extra = (EXTRA_PAIRS[folder] ?? []).flatMap((name) => [`${name}.crt`, `${name}.key`]);
      const expectedFiles = folder.startsWith('edge-')
        ? ['ca.crt', 'sensor-users', 'tls.crt', 'tls.key']
        : ['ca.crt', 'tls.crt', 'tls.key', ...extra];
      expect(readdirSync(dir).sort(), folder).toEqual(expectedFiles.sort());
      expect(readFileSync(join(dir, 'ca.crt')).equals(caPem), folder).toBe(true);
      const certPem = readFileSync(join(dir, 'tls.crt'));
      const summary = summarizeCertificate(certPem);
      expect(summary.commonName, folder).toBe(identity.commonName);
      expect(summary.organizationalUnit ?? null, folder).toBe(identity.role);
      const certificate = new X509Certificate(certPem);
      expect(certificate.verify(new X509Certificate(caPem).publicKey), `${folder} is signed by the CA`).toBe(true);
      const key = createPrivateKey(readFileSync(join(dir, 'tls.key')));
      expect(
        createPublicKey(key)
          .export({ format: 'der', type: 'spki' })
          .equals(certificate.publicKey.export({ format: 'der', type: 'spki' })),
        `${folder}: the key matches the certificate`,
      ).toBe(true);
      expect(statSync(join(dir, 'tls.key')).mode & 0o077, `${folder}/tls.key is private`).toBe(0);
    }
  });

  it("gives the bridge the REST API's server certificate for the host name bridge, with its key", () => {
    const dir = join(work, 'issued', 'bridge');
    const certificate = new X509Certificate(readFileSync(join(dir, 'api.crt')));
    expect(certificate.checkHost('bridge')).toBe('bridge');
    expect(summarizeCertificate(readFileSync(join(dir, 'api.crt'))).commonName).toBe('mqtt-edge-sync api');
    const key = createPrivateKey(readFileSync(join(dir, 'api.key')));
    expect(
      createPublicKey(key)
        .export({ format: 'der', type: 'spki' })
        .equals(certificate.publicKey.export({ format: 'der', type: 'spki' })),
    ).toBe(true);
    expect(statSync(join(dir, 'api.key')).mode & 0o077, 'bridge/api.key is private').toBe(0);
  });

  it('leaves no CA key and no other identity’s key in any issued folder', () => {
    const caKey = readFileSync(join(work, 'authority', 'ca.key'), 'utf8');
    const issued = join(work, 'issued');
    for (const folder of readdirSync(issued)) {
      for (const file of readdirSync(join(issued, folder))) {
        const content = readFileSync(join(issued, folder, file), 'utf8');
        expect(content, `${folder}/${file}`).not.toBe(caKey);
        if (content.includes('PRIVATE KEY'))
          expect(
            ['tls.key', ...(EXTRA_PAIRS[folder] ?? []).map((name) => `${name}.key`)],
            `${folder}/${file} holds a key`,
          ).toContain(file);
        if (file === 'sensor-users')
          expect(content, `${folder}/sensor-users holds hashes only`).toMatch(
            /^sim:\$scrypt\$[^\n]*:publisher(:[^\n]*)?\n?$/,
          );
      }
    }
  });

  it('points every service’s TLS variables at files in its own folder', () => {
    for (const [name, service] of Object.entries(services)) {
      if (name === 'certs') continue;
      const mount = certificateMounts(service)[0];
      const tlsVariables = Object.entries(service.environment ?? {}).filter(([variable]) =>
        /(^|_)TLS_(CA|CERT|KEY)$/.test(variable),
      );
      if (mount === undefined) {
        expect(tlsVariables, `${name} names TLS files but mounts none`).toEqual([]);
        continue;
      }
      // three per TLS identity: TLS_* for MQTT, and API_TLS_* for the bridge's REST API
      expect(
        tlsVariables.length % 3 === 0 && tlsVariables.length > 0,
        `${name}: ${tlsVariables.length} TLS variables`,
      ).toBe(true);
      for (const [variable, path] of tlsVariables) {
        expect(path.startsWith(`${mount.target}/`), `${name} ${variable}=${path}`).toBe(true);
        const local = join(work, 'issued', posix.basename(mount.source), posix.relative(mount.target, path));
        expect(statSync(local, { throwIfNoEntry: false })?.isFile(), `${name} ${variable}: ${local}`).toBe(true);
      }
    }
  });
});
