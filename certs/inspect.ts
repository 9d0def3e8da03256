/** Reading certificates back with node's own X.509 parser (what the TLS stack will see). */
import { X509Certificate } from 'node:crypto';

export const EXTENDED_KEY_USAGE = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

export interface CertificateSummary {
  commonName: string | undefined;
  organizationalUnit: string | undefined;
  issuerCommonName: string | undefined;
  serialNumber: string;
  validFrom: Date;
  validTo: Date;
  isCertificateAuthority: boolean;
  /** extended key usage OIDs (empty when the extension is absent) */
  extendedKeyUsage: string[];
  /** e.g. ['DNS:localhost', 'IP Address:127.0.0.1'] */
  subjectAltNames: string[];
  fingerprint256: string;
}

export function summarizeCertificate(pem: string | Buffer): CertificateSummary {
  const cert = new X509Certificate(pem);
  return {
    commonName: distinguishedNameField(cert.subject, 'CN'),
    organizationalUnit: distinguishedNameField(cert.subject, 'OU'),
    issuerCommonName: distinguishedNameField(cert.issuer, 'CN'),
    serialNumber: cert.serialNumber,
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    isCertificateAuthority: cert.ca,
    // node names the extended key usage list `keyUsage`
    extendedKeyUsage: cert.keyUsage ?? [],
    subjectAltNames: cert.subjectAltName ? cert.subjectAltName.split(', ') : [],
    fingerprint256: cert.fingerprint256,
  };
}

/** True when `certificatePem` was signed by the key of `authorityPem` and names it as issuer. */
export function isIssuedBy(certificatePem: string | Buffer, authorityPem: string | Buffer): boolean {
  const cert = new X509Certificate(certificatePem);
  const authority = new X509Certificate(authorityPem);
  return cert.checkIssued(authority) && cert.verify(authority.publicKey);
}

/** node prints a distinguished name as "CN=x\nOU=y" lines. */
function distinguishedNameField(distinguishedName: string, field: string): string | undefined {
  const prefix = `${field}=`;
  const line = distinguishedName.split('\n').find((entry) => entry.startsWith(prefix));
  return line?.slice(prefix.length);
}
