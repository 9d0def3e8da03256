/**
 * One spelling of a certificate serial number everywhere (pure): lower-case hexadecimal without
 * separators and without leading zeros. The spellings it unifies: node:tls getPeerCertificate()
 * and node:crypto X509Certificate give OpenSSL's BN_bn2hex (upper case, whole bytes, so "0A1B…"),
 * `openssl x509 -serial` gives "serial=0A1B…", `openssl x509 -text` and many tools "0a:1b:…", and
 * node-forge's cert.serialNumber lower case with a leading zero byte when the top bit is set.
 */

const HEX = /^[0-9a-f]+$/;

/** The canonical form, or null when `raw` is not a hexadecimal serial of at most 20 octets. */
export function normalizeCertificateSerial(raw: string): string | null {
  const compact = raw
    .trim()
    .replace(/^serial=/i, '')
    .replace(/^0x/i, '')
    .replace(/[:\s]/g, '')
    .toLowerCase();
  if (!HEX.test(compact)) return null;
  const canonical = compact.replace(/^0+/, '') || '0';
  return canonical.length <= 40 ? canonical : null;
}
