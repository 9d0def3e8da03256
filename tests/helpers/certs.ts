/**
 * Certificates for integration tests: a fresh CA, broker, service, observer and device
 * certificates in a temporary folder (through certs/dev-bundle.ts, like a real deployment), plus
 * certificates from an unrelated ("rogue") CA for negative tests. Key generation is native RSA
 * (~0.1 s per key on the thread pool), so keep the number of certificates small. The folder is
 * removed at teardown.
 */
import { readTlsFiles, type TlsFiles } from '../../common/tls-files.js';
export type { TlsFiles };
import { createCertificateAuthority, issueClientCertificate, type CertificateRole } from '../../certs/authority.js';
import { tempDirectory } from './temp-dir.js';
import { ensureDevCertificates, type CertificateBundle, type CertificateFiles } from '../../certs/dev-bundle.js';

export interface TestCertificateRequest {
  deviceIds: string[];
  serviceNames?: string[];
  observerNames?: string[];
  operatorNames?: string[];
}

export interface TestCertificates {
  dir: string;
  bundle: CertificateBundle;
  /** the CA certificate (PEM) every party trusts */
  ca: Buffer;
  broker: TlsFiles;
  devices: Record<string, TlsFiles>;
  services: Record<string, TlsFiles>;
  observers: Record<string, TlsFiles>;
  operators: Record<string, TlsFiles>;
}

export async function createTestCertificates(request: TestCertificateRequest): Promise<TestCertificates> {
  const dir = tempDirectory('mqtt-edge-sync-certs');
  const bundle = await ensureDevCertificates({
    dir,
    deviceIds: request.deviceIds,
    serviceNames: request.serviceNames ?? [],
    observerNames: request.observerNames ?? [],
    operatorNames: request.operatorNames ?? [],
    brokerHosts: ['localhost', '127.0.0.1'],
    validDays: 2,
  });
  const load = (files: CertificateFiles) => readTlsFiles({ caPath: bundle.ca.certPath, ...files });
  const loadAll = (entries: Record<string, CertificateFiles>) =>
    Object.fromEntries(Object.entries(entries).map(([id, files]) => [id, load(files)] as const));
  const [broker, devices, services, observers, operators] = [
    load(bundle.broker),
    loadAll(bundle.devices),
    loadAll(bundle.services),
    loadAll(bundle.observers),
    loadAll(bundle.operators),
  ];
  return { dir, bundle, ca: broker.ca, broker, devices, services, observers, operators };
}

/**
 * A client certificate with a plausible subject, signed by a freshly made CA the broker does not
 * trust. `ca` is that rogue CA: to reach the broker, connect with the real CA as `ca` and this
 * `cert`/`key`.
 */
export async function createRogueClientCertificate(subject: {
  commonName: string;
  role: CertificateRole;
}): Promise<TlsFiles> {
  const rogueAuthority = await createCertificateAuthority({
    commonName: 'mqtt-edge-sync development CA',
    validDays: 2,
  });
  const issued = await issueClientCertificate(rogueAuthority, { ...subject, validDays: 2 });
  return {
    ca: Buffer.from(rogueAuthority.certPem),
    cert: Buffer.from(issued.certPem),
    key: Buffer.from(issued.keyPem),
  };
}
