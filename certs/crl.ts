/**
 * X.509 certificate revocation lists (RFC 5280 section 5), written and read without file I/O.
 *
 * node-forge 1.4.3 can sign certificates but has no CRL type (nothing in lib/x509.js reads or
 * writes a CertificateList), so createCrl builds the DER with forge's ASN.1 API and signs the
 * TBSCertList with the CA key (sha256WithRSAEncryption, like every certificate of ./authority.ts):
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
 *   TBSCertList ::= SEQUENCE { version v2, signature, issuer, thisUpdate, nextUpdate,
 *                              revokedCertificates (omitted when empty), crlExtensions [0] }
 *
 * with the two extensions RFC 5280 requires of a conforming issuer, CRL number (2.5.29.20) and
 * authority key identifier (2.5.29.35), and a reason code entry extension (2.5.29.21) when the
 * revocation's reason is one of the RFC 5280 names (e.g. keyCompromise). `openssl crl -text`
 * reads the result (tests/unit/certs-crl.test.ts).
 *
 * readCrl is what the broker uses at start (BROKER_CRL_FILE, broker/revocation-sync.ts): it
 * checks the signature against the CA certificate with node:crypto and returns the revoked
 * serials in schemas/certificate-serial.ts form. Node.js' TLS could check a CRL itself
 * (tls.createSecureContext({crl})), but then a CRL past its nextUpdate would make OpenSSL refuse
 * every client, and it could not be combined with the list the bridge publishes at run time.
 */
import { createPublicKey, verify as verifySignature, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { normalizeCertificateSerial } from '../schemas/certificate-serial.js';
import { CertificateError, type CertificateAuthority } from './authority.js';

export interface CrlEntry {
  /** hexadecimal (any spelling normalizeCertificateSerial accepts) */
  serial: string;
  revokedAt: Date;
  /** free text; becomes a reasonCode entry extension when it is one of REASON_CODES' names */
  reason?: string | null;
}

export interface CrlOptions {
  entries: CrlEntry[];
  thisUpdate: Date;
  nextUpdate: Date;
  /** monotonically increasing per CA (RFC 5280 5.2.3) */
  crlNumber: number;
}

/** RFC 5280 5.3.1 CRLReason */
export const REASON_CODES: Readonly<Record<string, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

const OID = {
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  crlNumber: '2.5.29.20',
  authorityKeyIdentifier: '2.5.29.35',
  reasonCode: '2.5.29.21',
};

const { asn1 } = forge;
const UNIVERSAL = asn1.Class.UNIVERSAL;
const seq = (value: forge.asn1.Asn1[]) => asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, value);
const oid = (value: string) => asn1.create(UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(value).getBytes());
const octets = (bytes: string) => asn1.create(UNIVERSAL, asn1.Type.OCTETSTRING, false, bytes);
const der = (value: forge.asn1.Asn1) => asn1.toDer(value).getBytes();

/** A DER INTEGER from a non-negative hexadecimal value (a sign byte added when the top bit is set). */
function integerFromHex(hex: string): forge.asn1.Asn1 {
  let even = hex.length % 2 === 0 ? hex : `0${hex}`;
  if (parseInt(even.slice(0, 2), 16) >= 0x80) even = `00${even}`;
  return asn1.create(UNIVERSAL, asn1.Type.INTEGER, false, forge.util.hexToBytes(even));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 5.1.2.4). */
function time(date: Date): forge.asn1.Asn1 {
  return date.getUTCFullYear() < 2050
    ? asn1.create(UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

function extension(id: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return seq([oid(id), octets(der(value))]);
}

/** The CRL as PEM ("X509 CRL"), signed by `ca`. */
export function createCrl(ca: CertificateAuthority, options: CrlOptions): string {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const algorithm = seq([oid(OID.sha256WithRSAEncryption), asn1.create(UNIVERSAL, asn1.Type.NULL, false, '')]);

  const revoked = options.entries.map((entry) => {
    const serial = normalizeCertificateSerial(entry.serial);
    if (serial === null) throw new CertificateError(`'${entry.serial}' is not a certificate serial number`);
    const fields = [integerFromHex(serial), time(entry.revokedAt)];
    const code = entry.reason ? REASON_CODES[entry.reason] : undefined;
    if (code !== undefined) {
      const enumerated = asn1.create(UNIVERSAL, asn1.Type.ENUMERATED, false, String.fromCharCode(code));
      fields.push(seq([extension(OID.reasonCode, enumerated)]));
    }
    return seq(fields);
  });

  const skiExtension = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  const keyIdentifier = skiExtension?.subjectKeyIdentifier
    ? forge.util.hexToBytes(skiExtension.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
  const crlExtensions = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
    seq([
      extension(OID.crlNumber, integerFromHex(options.crlNumber.toString(16))),
      extension(OID.authorityKeyIdentifier, seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier)])),
    ]),
  ]);

  const tbs = seq([
    asn1.create(UNIVERSAL, asn1.Type.INTEGER, false, String.fromCharCode(1)), // v2
    algorithm,
    forge.pki.distinguishedNameToAsn1(caCert.subject),
    time(options.thisUpdate),
    time(options.nextUpdate),
    ...(revoked.length > 0 ? [seq(revoked)] : []),
    crlExtensions,
  ]);
  const digest = forge.md.sha256.create();
  digest.update(der(tbs));
  const signature = caKey.sign(digest);
  const list = seq([tbs, algorithm, asn1.create(UNIVERSAL, asn1.Type.BITSTRING, false, `\u0000${signature}`)]);
  return forge.pem.encode({ type: 'X509 CRL', body: der(list) });
}

// ---------------------------------------------------------------------------------------------
// reading

export interface ReadCrl {
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** schemas/certificate-serial.ts form */
  serials: string[];
}

/** A DER element: tag byte, where its content starts and ends in the buffer. */
interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

function readTlv(buffer: Buffer, offset: number): Tlv {
  const tag = buffer[offset];
  const first = buffer[offset + 1];
  if (tag === undefined || first === undefined) throw new CertificateError('the CRL is truncated');
  let length = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const octetCount = first & 0x7f;
    if (octetCount === 0 || octetCount > 4) throw new CertificateError('the CRL has an unsupported DER length');
    length = 0;
    for (let i = 0; i < octetCount; i++) length = length * 256 + (buffer[offset + 2 + i] ?? 0);
    contentStart += octetCount;
  }
  const end = contentStart + length;
  if (end > buffer.length) throw new CertificateError('the CRL is truncated');
  return { tag, start: offset, contentStart, end };
}

function children(buffer: Buffer, parent: Tlv): Tlv[] {
  const result: Tlv[] = [];
  for (let offset = parent.contentStart; offset < parent.end; ) {
    const child = readTlv(buffer, offset);
    result.push(child);
    offset = child.end;
  }
  return result;
}

const TAG = { INTEGER: 0x02, BITSTRING: 0x03, OID: 0x06, SEQUENCE: 0x30, UTCTIME: 0x17, GENERALIZEDTIME: 0x18 };

function readTime(buffer: Buffer, tlv: Tlv): Date {
  const text = buffer.subarray(tlv.contentStart, tlv.end).toString('latin1');
  return tlv.tag === TAG.UTCTIME ? asn1.utcTimeToDate(text) : asn1.generalizedTimeToDate(text);
}

/**
 * Reads a CRL (PEM or DER), checks that `caCertPem` signed it, and returns its revoked serials.
 * Throws a CertificateError otherwise.
 */
export function readCrl(crl: Buffer | string, caCertPem: Buffer | string): ReadCrl {
  const text = typeof crl === 'string' ? crl : crl.toString('latin1');
  const derBytes = text.includes('-----BEGIN X509 CRL-----')
    ? Buffer.from(forge.pem.decode(text)[0]?.body ?? '', 'latin1')
    : Buffer.isBuffer(crl)
      ? crl
      : Buffer.from(crl, 'latin1');
  const list = readTlv(derBytes, 0);
  const [tbs, algorithm, signature] = children(derBytes, list);
  if (list.tag !== TAG.SEQUENCE || !tbs || !algorithm || !signature || signature.tag !== TAG.BITSTRING) {
    throw new CertificateError('not an X.509 CRL');
  }
  const [algorithmOid] = children(derBytes, algorithm);
  const algorithmName =
    algorithmOid && asn1.derToOid(derBytes.subarray(algorithmOid.contentStart, algorithmOid.end).toString('latin1'));
  if (algorithmName !== OID.sha256WithRSAEncryption) {
    throw new CertificateError(`the CRL is signed with ${algorithmName ?? '?'}; only sha256WithRSAEncryption is read`);
  }
  const signed = derBytes.subarray(tbs.start, tbs.end);
  const signatureBytes = derBytes.subarray(signature.contentStart + 1, signature.end); // skip the unused-bits byte
  const caKey = createPublicKey(new X509Certificate(caCertPem).publicKey.export({ type: 'spki', format: 'pem' }));
  if (!verifySignature('sha256', signed, caKey, signatureBytes)) {
    throw new CertificateError('the CRL is not signed by the CA');
  }

  const fields = children(derBytes, tbs);
  let index = fields[0]?.tag === TAG.INTEGER ? 1 : 0; // version
  index += 2; // signature algorithm, issuer
  const thisUpdateTlv = fields[index++];
  if (!thisUpdateTlv) throw new CertificateError('the CRL has no thisUpdate');
  const thisUpdate = readTime(derBytes, thisUpdateTlv);
  let nextUpdate: Date | undefined;
  const maybeNext = fields[index];
  if (maybeNext && (maybeNext.tag === TAG.UTCTIME || maybeNext.tag === TAG.GENERALIZEDTIME)) {
    nextUpdate = readTime(derBytes, maybeNext);
    index++;
  }
  const serials: string[] = [];
  const revoked = fields[index];
  if (revoked && revoked.tag === TAG.SEQUENCE) {
    for (const entry of children(derBytes, revoked)) {
      const [serial] = children(derBytes, entry);
      if (!serial || serial.tag !== TAG.INTEGER) throw new CertificateError('a CRL entry has no serial number');
      const normalized = normalizeCertificateSerial(derBytes.subarray(serial.contentStart, serial.end).toString('hex'));
      if (normalized === null) throw new CertificateError('a CRL entry has an unreadable serial number');
      serials.push(normalized);
    }
  }
  return { thisUpdate, nextUpdate, serials };
}
