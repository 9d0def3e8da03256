/**
 * Certificates for a simulated fleet of thousands of devices, for benchmarks: one RSA key pair
 * shared by every device and one certificate per device id (CN = id, OU = device), signed by the
 * development CA in `dir` (created with certs/dev-bundle.ts when missing). Issued once and cached
 * in `dir`/devices.json, so a later run with the same or fewer devices reuses them.
 *
 * Development only: a shared private key is exactly what a real fleet must never have.
 */
import { constants, createPrivateKey, generateKeyPairSync, privateEncrypt, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';
import { ensureDevCertificates, type CertificateBundle } from '../certs/dev-bundle.js';

export interface FleetCertificates {
  ca: Buffer;
  key: Buffer;
  certs: { id: string; cert: Buffer }[];
  brokerFiles: { cert: string; key: string; ca: string };
  bundle: CertificateBundle;
  /** seconds spent issuing new certificates in this call (0 when all came from the cache) */
  issuedSeconds: number;
}

/** forge signs in JavaScript (~10 ms per RSA signature); node's OpenSSL does the same PKCS#1 v1.5 signature natively. */
function nativeSigner(caKeyPem: string) {
  const key = createPrivateKey(caKeyPem);
  const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');
  return {
    sign(md: forge.md.MessageDigest): string {
      const digest = Buffer.from(md.digest().getBytes(), 'binary');
      const signature = privateEncrypt(
        { key, padding: constants.RSA_PKCS1_PADDING },
        Buffer.concat([SHA256_DIGEST_INFO, digest]),
      );
      return signature.toString('binary');
    },
  };
}

export async function fleetCertificates(
  dir: string,
  count: number,
  options: { serviceNames?: string[]; observerNames?: string[]; operatorNames?: string[] } = {},
): Promise<FleetCertificates> {
  const bundle = await ensureDevCertificates({
    dir,
    brokerHosts: ['localhost', '127.0.0.1'],
    validDays: 365,
    ...options,
  });
  const cachePath = join(dir, 'devices.json');
  const cache = existsSync(cachePath)
    ? (JSON.parse(readFileSync(cachePath, 'utf8')) as { keyPem: string; certs: { id: string; certPem: string }[] })
    : (() => {
        const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        return { keyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), certs: [] };
      })();
  const started = Date.now();
  const issuing = cache.certs.length < count;
  if (issuing) {
    const caCert = forge.pki.certificateFromPem(readFileSync(bundle.ca.certPath, 'utf8'));
    const signer = nativeSigner(readFileSync(bundle.ca.keyPath, 'utf8'));
    const devicePrivateKey = forge.pki.privateKeyFromPem(cache.keyPem);
    const publicKey = forge.pki.setRsaPublicKey(devicePrivateKey.n, devicePrivateKey.e);
    while (cache.certs.length < count) {
      const id = randomUUID();
      const cert = forge.pki.createCertificate();
      cert.publicKey = publicKey;
      cert.serialNumber = `01${Buffer.from(randomUUID().replaceAll('-', ''), 'hex').toString('hex')}`;
      cert.validity.notBefore = new Date(Date.now() - 5 * 60_000);
      cert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600_000);
      cert.setSubject([
        { shortName: 'CN', value: id },
        { shortName: 'OU', value: 'device' },
      ]);
      cert.setIssuer(caCert.subject.attributes);
      cert.setExtensions([
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', clientAuth: true },
        { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
      ]);
      cert.sign(signer as unknown as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
      cache.certs.push({ id, certPem: forge.pki.certificateToPem(cert) });
    }
    writeFileSync(cachePath, JSON.stringify(cache), { mode: 0o600 });
  }
  return {
    ca: readFileSync(bundle.ca.certPath),
    key: Buffer.from(cache.keyPem),
    certs: cache.certs.slice(0, count).map(({ id, certPem }) => ({ id, cert: Buffer.from(certPem) })),
    brokerFiles: { cert: bundle.broker.certPath, key: bundle.broker.keyPath, ca: bundle.ca.certPath },
    bundle,
    issuedSeconds: issuing ? (Date.now() - started) / 1000 : 0,
  };
}
