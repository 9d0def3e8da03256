import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { decideDelivery, decidePublish, decideStoredWillPublish, decideSubscribe } from '../../broker/acl.js';
import { identifyClient, type ClientIdentity } from '../../broker/identity.js';
import { decidePublishContent } from '../../broker/publish-content.js';
import { RevokedSerials } from '../../broker/revocation-list.js';
import { revocationListPayload } from '../../bridge/revocation-publisher.js';
import {
  createCertificateAuthority,
  issueClientCertificate,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../../certs/authority.js';
import { createCrl, readCrl } from '../../certs/crl.js';
import { normalizeCertificateSerial } from '../../schemas/certificate-serial.js';
import { MAX_PAYLOAD_BYTES, MAX_REVOKED_CERTIFICATES } from '../../schemas/limits.js';
import { CONTROL_REVOCATIONS_TOPIC } from '../../schemas/topics.js';
import { checkRevocationListPayload } from '../../schemas/validators.js';

const DEVICE = '7b3e9f10-2c4d-4a5b-8e6f-1a2b3c4d5e6f';

describe('normalizeCertificateSerial', () => {
  it('gives one spelling for what node, openssl and forge print', () => {
    for (const spelling of ['0A1B2C', '0a:1b:2c', 'serial=0A1B2C', '000a1b2c', ' 0x0A1B2C ', 'A1B2C']) {
      expect(normalizeCertificateSerial(spelling), spelling).toBe('a1b2c');
    }
    expect(normalizeCertificateSerial('00')).toBe('0');
  });

  it('refuses what is not a serial of at most 20 octets', () => {
    expect(normalizeCertificateSerial('')).toBeNull();
    expect(normalizeCertificateSerial('xyz')).toBeNull();
    expect(normalizeCertificateSerial('1'.repeat(41))).toBeNull();
    expect(normalizeCertificateSerial(`00${'f'.repeat(40)}`)).toBe('f'.repeat(40));
  });
});

describe('RevokedSerials', () => {
  const list = (generatedAt: string, serials: string[]) => ({ generatedAt, serials });

  it('replaces the published list with each newer one and says what was added and removed', () => {
    const revoked = new RevokedSerials();
    expect(revoked.apply(list('2026-01-01T00:00:00.000Z', ['a', 'b']))).toEqual({
      applied: true,
      added: ['a', 'b'],
      removed: [],
      count: 2,
    });
    expect(revoked.apply(list('2026-01-01T00:00:01.000Z', ['b', 'c']))).toEqual({
      applied: true,
      added: ['c'],
      removed: ['a'],
      count: 2,
    });
    expect([revoked.has('a'), revoked.has('b'), revoked.has('c'), revoked.has(undefined)]).toEqual([
      false,
      true,
      true,
      false,
    ]);
  });

  it('ignores a list older than the one in force (a retained copy read after a live update)', () => {
    const revoked = new RevokedSerials();
    revoked.apply(list('2026-01-01T00:00:05.000Z', ['a']));
    expect(revoked.apply(list('2026-01-01T00:00:04.000Z', []))).toMatchObject({ applied: false });
    expect(revoked.has('a')).toBe(true);
    expect(revoked.apply(list('2026-01-01T00:00:05.000Z', ['a', 'b']))).toMatchObject({ applied: true, added: ['b'] });
  });

  it('keeps the CRL file serials whatever the published list says', () => {
    const revoked = new RevokedSerials();
    revoked.setFileSerials(['f']);
    expect(revoked.has('f')).toBe(true);
    expect(revoked.apply(list('2026-01-01T00:00:00.000Z', ['f', 'g']))).toMatchObject({ added: ['g'], count: 2 });
    expect(revoked.apply(list('2026-01-01T00:00:01.000Z', []))).toMatchObject({ removed: ['g'], count: 1 });
    expect(revoked.has('f')).toBe(true);
  });
});

describe('the revocation list payload', () => {
  it('is built sorted and without duplicates, with the snapshot time', () => {
    const built = revocationListPayload(new Date('2026-01-01T00:00:00Z'), ['c', 'a', 'c']);
    expect(built).toMatchObject({ ok: true, list: { generatedAt: '2026-01-01T00:00:00.000Z', serials: ['a', 'c'] } });
    if (built.ok) expect(checkRevocationListPayload(built.payload)).toEqual({ ok: true, value: built.list });
  });

  it('is not built beyond MAX_REVOKED_CERTIFICATES, and the largest one fits the payload limit', () => {
    const serials = Array.from({ length: MAX_REVOKED_CERTIFICATES }, (_, index) =>
      (BigInt(index + 1) * 0xfedcba9876543210fedcban).toString(16).slice(0, 32),
    );
    const largest = revocationListPayload(new Date(), serials);
    expect(largest.ok).toBe(true);
    if (largest.ok) expect(Buffer.byteLength(largest.payload)).toBeLessThan(MAX_PAYLOAD_BYTES);
    expect(revocationListPayload(new Date(), [...serials, '1'])).toMatchObject({ ok: false });
  });

  it('is checked against its schema', () => {
    expect(checkRevocationListPayload('{"generatedAt":"2026-01-01T00:00:00Z","serials":["0a"]}').ok).toBe(false);
    expect(checkRevocationListPayload('{"generatedAt":"2026-01-01T00:00:00Z","serials":["a","a"]}').ok).toBe(false);
    expect(checkRevocationListPayload('{"serials":[]}').ok).toBe(false);
    expect(checkRevocationListPayload('not json').ok).toBe(false);
    expect(decidePublishContent(CONTROL_REVOCATIONS_TOPIC, '{"serials":"all"}', 0)).toMatchObject({
      accepted: false,
      kind: 'revocation-list',
    });
  });
});

describe('the control topic in the ACL', () => {
  const limits = { maxPayloadBytes: MAX_PAYLOAD_BYTES };
  const service: ClientIdentity = { role: 'service', id: 'bridge' };
  const device: ClientIdentity = { role: 'device', id: DEVICE };
  const observer: ClientIdentity = { role: 'observer', id: 'explorer' };
  const request = (retain: boolean, qos = 1) => ({ topic: CONTROL_REVOCATIONS_TOPIC, qos, retain, payloadBytes: 64 });

  it('may be published by the service role only, retained and at QoS 1', () => {
    expect(decidePublish(service, request(true), limits)).toEqual({ allowed: true });
    expect(decidePublish(service, request(false), limits)).toMatchObject({ allowed: false });
    expect(decidePublish(service, request(true, 0), limits)).toMatchObject({ allowed: false });
    expect(decidePublish(device, request(true), limits)).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('only the service role may publish') as unknown,
    });
    expect(decidePublish(observer, request(true), limits)).toMatchObject({ allowed: false });
    expect(decideStoredWillPublish(request(true), limits)).toMatchObject({ allowed: false });
  });

  it('is neither subscribable nor delivered to any role', () => {
    for (const identity of [service, device, observer]) {
      for (const filter of [CONTROL_REVOCATIONS_TOPIC, 'control/#', '+/revocations', '#']) {
        expect(decideSubscribe(identity, filter).allowed, `${identity.role} ${filter}`).toBe(false);
      }
      expect(decideDelivery(identity, CONTROL_REVOCATIONS_TOPIC).allowed).toBe(false);
    }
  });
});

describe('CRLs', () => {
  let ca: CertificateAuthority;
  let leaf: IssuedCertificate;
  let serial: string;

  beforeAll(async () => {
    ca = await createCertificateAuthority({ commonName: 'test CA', validDays: 2 });
    leaf = await issueClientCertificate(ca, { commonName: DEVICE, role: 'device', validDays: 2 });
    serial = normalizeCertificateSerial(new X509Certificate(leaf.certPem).serialNumber)!;
  });

  const crl = (authority: CertificateAuthority, serials: string[]) =>
    createCrl(authority, {
      entries: serials.map((entry) => ({
        serial: entry,
        revokedAt: new Date('2026-01-02T03:04:05Z'),
        reason: 'keyCompromise',
      })),
      thisUpdate: new Date('2026-01-03T00:00:00Z'),
      nextUpdate: new Date('2060-01-01T00:00:00Z'),
      crlNumber: 42,
    });

  it('are read back with their serials and dates, signed by the CA', () => {
    const read = readCrl(crl(ca, [serial, 'ff', '80']), ca.certPem);
    expect(read).toEqual({
      thisUpdate: new Date('2026-01-03T00:00:00Z'),
      nextUpdate: new Date('2060-01-01T00:00:00Z'),
      serials: [serial, 'ff', '80'],
    });
    expect(readCrl(crl(ca, []), ca.certPem).serials).toEqual([]);
  });

  it('are read from DER too', () => {
    const pem = crl(ca, [serial]);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(readCrl(der, ca.certPem).serials).toEqual([serial]);
  });

  it('are refused when another CA signed them or they were altered', async () => {
    const other = await createCertificateAuthority({ commonName: 'test CA', validDays: 2 });
    expect(() => readCrl(crl(other, [serial]), ca.certPem)).toThrow('the CRL is not signed by the CA');
    const der = Buffer.from(crl(ca, ['ab']).replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const altered = Buffer.from(der);
    // the serial 0xab as a DER INTEGER: 02 02 00 ab (a sign byte before the set top bit)
    const at = altered.indexOf(Buffer.from([0x02, 0x02, 0x00, 0xab]));
    expect(at).toBeGreaterThan(0);
    altered[at + 3] = 0xac;
    expect(() => readCrl(altered, ca.certPem)).toThrow('the CRL is not signed by the CA');
    expect(() => readCrl('not a crl', ca.certPem)).toThrow();
  });
});

describe('identifyClient', () => {
  it('keeps the certificate serial in the identity, in its one spelling', () => {
    const decision = identifyClient({
      certificate: { subject: { CN: DEVICE, OU: 'device' }, serialNumber: '0A1B2C' },
      authorized: true,
      clientId: DEVICE,
    });
    expect(decision).toEqual({ ok: true, identity: { role: 'device', id: DEVICE, serial: 'a1b2c' } });
  });
});
