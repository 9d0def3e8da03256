import { X509Certificate, createPrivateKey } from 'node:crypto';
import forge from 'node-forge';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CertificateError,
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../../certs/authority.js';
import { EXTENDED_KEY_USAGE, isIssuedBy, summarizeCertificate } from '../../certs/inspect.js';

const DEVICE_ID = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const DAY_MS = 24 * 60 * 60 * 1000;
const SHA256_WITH_RSA = '1.2.840.113549.1.1.11';

let ca: CertificateAuthority;
let server: IssuedCertificate;
let device: IssuedCertificate;
let service: IssuedCertificate;
let observer: IssuedCertificate;
/** the clock before and after every certificate here was issued */
const issued = { from: 0, until: 0 };

beforeAll(async () => {
  issued.from = Date.now();
  ca = await createCertificateAuthority({ commonName: 'test CA', validDays: 30 });
  [server, device, service, observer] = await Promise.all([
    issueServerCertificate(ca, {
      commonName: 'broker',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      validDays: 10,
    }),
    issueClientCertificate(ca, { commonName: DEVICE_ID, role: 'device', validDays: 10 }),
    issueClientCertificate(ca, { commonName: 'bridge', role: 'service', validDays: 10 }),
    issueClientCertificate(ca, { commonName: 'mqtt-explorer', role: 'observer', validDays: 10 }),
  ]);
  issued.until = Date.now();
});

/**
 * Valid from a few minutes before it was issued (clock skew) until `days` after, measured against
 * the clock around the issuing itself, however long ago that was. Certificates hold whole seconds.
 */
function expectValidFor(pem: string, days: number): void {
  const summary = summarizeCertificate(pem);
  const from = Math.floor(issued.from / 1000) * 1000;
  expect(summary.validFrom.getTime()).toBeLessThanOrEqual(issued.until);
  expect(summary.validFrom.getTime()).toBeGreaterThan(from - 10 * 60 * 1000);
  expect(summary.validTo.getTime()).toBeGreaterThanOrEqual(from + days * DAY_MS);
  expect(summary.validTo.getTime()).toBeLessThanOrEqual(issued.until + days * DAY_MS);
}

describe('createCertificateAuthority', () => {
  it('is a self-signed CA with RSA 2048 and SHA-256', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain('CN=test CA');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(forge.pki.certificateFromPem(ca.certPem).siginfo.algorithmOid).toBe(SHA256_WITH_RSA);
    expect(cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expectValidFor(ca.certPem, 30);
  });
});

describe('issueServerCertificate', () => {
  it('is signed by the CA, for serverAuth, with the requested alt names', () => {
    const cert = new X509Certificate(server.certPem);
    const summary = summarizeCertificate(server.certPem);
    expect(cert.ca).toBe(false);
    expect(isIssuedBy(server.certPem, ca.certPem)).toBe(true);
    expect(summary.issuerCommonName).toBe('test CA');
    expect(summary.extendedKeyUsage).toEqual([EXTENDED_KEY_USAGE.serverAuth]);
    expect(summary.subjectAltNames).toEqual(['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1']);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkHost('example.com')).toBeUndefined();
    expect(cert.checkPrivateKey(createPrivateKey(server.keyPem))).toBe(true);
    expectValidFor(server.certPem, 10);
  });

  it('refuses a certificate without hosts and malformed IP addresses', async () => {
    await expect(
      issueServerCertificate(ca, { commonName: 'b', dnsNames: [], ipAddresses: [], validDays: 1 }),
    ).rejects.toThrow(/at least one DNS name or IP address/);
    await expect(
      issueServerCertificate(ca, { commonName: 'b', dnsNames: [], ipAddresses: ['300.1.1.1'], validDays: 1 }),
    ).rejects.toThrow("'300.1.1.1' is not an IP address");
  });
});

describe('issueClientCertificate', () => {
  it.each([
    ['device', () => device, DEVICE_ID],
    ['service', () => service, 'bridge'],
    ['observer', () => observer, 'mqtt-explorer'],
  ] as const)('%s: CN is the identity, OU the role, clientAuth only, signed by the CA', (role, issued, commonName) => {
    const { certPem, keyPem } = issued();
    const summary = summarizeCertificate(certPem);
    expect(summary.commonName).toBe(commonName);
    expect(summary.organizationalUnit).toBe(role);
    expect(summary.issuerCommonName).toBe('test CA');
    expect(summary.isCertificateAuthority).toBe(false);
    expect(summary.extendedKeyUsage).toEqual([EXTENDED_KEY_USAGE.clientAuth]);
    expect(summary.subjectAltNames).toEqual([]);
    expect(isIssuedBy(certPem, ca.certPem)).toBe(true);
    expect(new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(forge.pki.certificateFromPem(certPem).siginfo.algorithmOid).toBe(SHA256_WITH_RSA);
    expectValidFor(certPem, 10);
  });

  it('gives every certificate a different, positive random serial number', () => {
    const serials = [ca, server, device, service, observer].map(
      (issued) => summarizeCertificate(issued.certPem).serialNumber,
    );
    expect(new Set(serials).size).toBe(serials.length);
    for (const serial of serials) {
      expect(serial).toMatch(/^[0-9A-F]{32}$/);
      expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThan(0x80);
    }
  });

  it('is not issued by another CA', async () => {
    const other = await createCertificateAuthority({ commonName: 'test CA', validDays: 1 });
    expect(isIssuedBy(device.certPem, other.certPem)).toBe(false);
  });

  it('refuses bad input with a clear error', async () => {
    await expect(issueClientCertificate(ca, { commonName: 'x', role: 'admin' as never, validDays: 1 })).rejects.toThrow(
      "unknown role 'admin' (expected device, service, observer, operator)",
    );
    await expect(issueClientCertificate(ca, { commonName: ' ', role: 'device', validDays: 1 })).rejects.toBeInstanceOf(
      CertificateError,
    );
    await expect(issueClientCertificate(ca, { commonName: 'x', role: 'device', validDays: 0 })).rejects.toThrow(
      /validDays/,
    );
  });
});
