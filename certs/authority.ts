/**
 * A small X.509 authority for the cluster's mutual TLS (node-forge). No file I/O here: every
 * function takes and returns PEM text. Keys are RSA 2048, signatures SHA-256, serials random.
 *
 * Client certificates carry the identity in the subject: CN = client id (a device UUID, a service
 * name such as 'bridge', an observer name such as 'mqtt-explorer', an operator name such as 'alice')
 * and OU = role. The broker (broker/identity.ts) and the REST API (bridge/api/auth.ts) read both
 * through common/certificate-identity.ts; the broker requires the MQTT clientId to equal the CN.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

export type CertificateRole = 'device' | 'service' | 'observer' | 'operator';
/** operator: a person or script using the REST API (bridge/api/) and the ctl CLI; no MQTT rights */
export const CERTIFICATE_ROLES: readonly CertificateRole[] = ['device', 'service', 'observer', 'operator'];

/** PEM-encoded certificate and its private key. */
export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
}

/** The CA is an issued certificate whose key signs the others. */
export type CertificateAuthority = IssuedCertificate;

export interface AuthorityOptions {
  commonName: string;
  validDays: number;
  organization?: string;
}

export interface ServerCertificateOptions {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  validDays: number;
}

export interface ClientCertificateOptions {
  commonName: string;
  role: CertificateRole;
  validDays: number;
}

const RSA_BITS = 2048;
const DEFAULT_ORGANIZATION = 'mqtt-edge-sync';
/** notBefore is set this far in the past so that a peer with a slightly slow clock accepts the cert. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

export class CertificateError extends Error {
  override name = 'CertificateError';
}

export async function createCertificateAuthority(options: AuthorityOptions): Promise<CertificateAuthority> {
  assertCommonName(options.commonName);
  assertValidDays(options.validDays);
  const keys = await generateRsaKeyPair();
  const subject = [
    { shortName: 'CN', value: options.commonName },
    { shortName: 'O', value: options.organization ?? DEFAULT_ORGANIZATION },
  ];
  const cert = newCertificate(keys.publicKey, options.validDays);
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

export async function issueServerCertificate(
  ca: CertificateAuthority,
  options: ServerCertificateOptions,
): Promise<IssuedCertificate> {
  assertCommonName(options.commonName);
  if (options.dnsNames.length === 0 && options.ipAddresses.length === 0) {
    throw new CertificateError('a server certificate needs at least one DNS name or IP address');
  }
  for (const ip of options.ipAddresses) {
    if (isIP(ip) === 0) throw new CertificateError(`'${ip}' is not an IP address`);
  }
  const altNames = [
    ...options.dnsNames.map((value) => ({ type: 2, value })),
    ...options.ipAddresses.map((ip) => ({ type: 7, ip })),
  ];
  return issueLeaf(ca, [{ shortName: 'CN', value: options.commonName }], options.validDays, [
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
}

export async function issueClientCertificate(
  ca: CertificateAuthority,
  options: ClientCertificateOptions,
): Promise<IssuedCertificate> {
  assertCommonName(options.commonName);
  if (!CERTIFICATE_ROLES.includes(options.role)) {
    throw new CertificateError(`unknown role '${String(options.role)}' (expected ${CERTIFICATE_ROLES.join(', ')})`);
  }
  const subject = [
    { shortName: 'CN', value: options.commonName },
    { shortName: 'OU', value: options.role },
  ];
  return issueLeaf(ca, subject, options.validDays, [{ name: 'extKeyUsage', clientAuth: true }]);
}

async function issueLeaf(
  ca: CertificateAuthority,
  subject: forge.pki.CertificateField[],
  validDays: number,
  extensions: object[],
): Promise<IssuedCertificate> {
  assertValidDays(validDays);
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = await generateRsaKeyPair();
  const cert = newCertificate(keys.publicKey, validDays);
  cert.setSubject(subject);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...extensions,
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

function newCertificate(publicKey: forge.pki.rsa.PublicKey, validDays: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerialNumber();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + validDays * 24 * 60 * 60 * 1000);
  return cert;
}

/** 128 random bits as hex, with the top bit cleared so the DER INTEGER stays positive. */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f || 0x01;
  return bytes.toString('hex');
}

/** forge delegates to node's native (threadpool) RSA key generation when it is available. */
function generateRsaKeyPair(): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 }, (error, keyPair) => {
      if (error) reject(error);
      else resolve(keyPair);
    });
  });
}

function assertCommonName(commonName: string): void {
  if (typeof commonName !== 'string' || commonName.trim() === '' || commonName.length > 64) {
    throw new CertificateError(`common name must be 1-64 characters, got '${String(commonName)}'`);
  }
}

function assertValidDays(validDays: number): void {
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > 3650) {
    throw new CertificateError(`validDays must be an integer between 1 and 3650, got ${validDays}`);
  }
}
