/**
 * Who a TLS peer is, from its client certificate (pure; no I/O). One mapping for every process
 * that authenticates clients by certificate: the broker (broker/identity.ts, MQTT) and the
 * bridge's REST API (bridge/api/auth.ts, HTTP), so a subject means the same everywhere (G9).
 *
 * The subject's CN is the identity and its OU the role (certs/authority.ts issues them so). Each
 * caller says which roles it serves: the broker device/service/observer, the REST API
 * device/operator; any other OU is refused as 'unknown-role'. A device's CN must be a device UUID.
 * Revocation is not decided here (it needs the revocation list): callers check the serial.
 */
import { normalizeCertificateSerial } from '../schemas/certificate-serial.js';
import { isDeviceId } from '../schemas/topics.js';

/** Every role a project certificate can carry (certs/authority.ts CERTIFICATE_ROLES). */
export type CertificateRoleName = 'device' | 'service' | 'observer' | 'operator';

export interface CertificateIdentity<R extends string = CertificateRoleName> {
  role: R;
  /** the certificate's CN: a device UUID, or a service/observer/operator name */
  id: string;
  /** the certificate's serial number (schemas/certificate-serial.ts form), what revocation names (G9) */
  serial?: string;
}

export type CertificateRefusalCode =
  | 'no-certificate'
  | 'untrusted-certificate'
  | 'missing-subject'
  | 'ambiguous-subject'
  | 'unknown-role'
  | 'invalid-device-id';

export type CertificateDecision<R extends string> =
  | { ok: true; identity: CertificateIdentity<R> }
  | { ok: false; code: CertificateRefusalCode; reason: string };

/** The part of node's tls PeerCertificate this module reads (node gives `{}` when there is none). */
export interface PeerCertificateLike {
  subject?: Partial<Record<string, string | string[] | undefined>> | null;
  /** hexadecimal, as node:tls gives it */
  serialNumber?: string;
}

export interface CertificateInput<R extends string> {
  certificate: PeerCertificateLike | null | undefined;
  /** TLSSocket.authorized: the chain verified against the CA (and within its validity) */
  authorized: boolean;
  /** the roles this service accepts */
  roles: readonly R[];
  /** names the service in the unknown-role reason, e.g. 'the broker'; default none */
  servedBy?: string;
}

export function identityFromCertificate<R extends string>(input: CertificateInput<R>): CertificateDecision<R> {
  const subject = input.certificate?.subject;
  if (!subject || Object.keys(subject).length === 0) {
    return refuse('no-certificate', 'the client presented no certificate');
  }
  if (!input.authorized) {
    return refuse('untrusted-certificate', 'the client certificate is not signed by the cluster CA');
  }
  const commonName = subject.CN;
  const role = subject.OU;
  if (Array.isArray(commonName) || Array.isArray(role)) {
    return refuse('ambiguous-subject', 'the certificate subject has more than one CN or OU');
  }
  if (!commonName) return refuse('missing-subject', 'the certificate subject has no CN (client id)');
  if (!role) return refuse('missing-subject', `the certificate of '${commonName}' has no OU (role)`);
  if (!(input.roles as readonly string[]).includes(role)) {
    const where = input.servedBy === undefined ? '' : ` for ${input.servedBy}`;
    return refuse(
      'unknown-role',
      `the certificate role (OU) '${role}' is not one of ${input.roles.join(', ')}${where}`,
    );
  }
  if (role === 'device' && !isDeviceId(commonName)) {
    return refuse('invalid-device-id', `the device certificate CN '${commonName}' is not a device UUID`);
  }
  const serial = input.certificate?.serialNumber ? normalizeCertificateSerial(input.certificate.serialNumber) : null;
  const identity: CertificateIdentity<R> =
    serial === null ? { role: role as R, id: commonName } : { role: role as R, id: commonName, serial };
  return { ok: true, identity };
}

function refuse<R extends string>(code: CertificateRefusalCode, reason: string): CertificateDecision<R> {
  return { ok: false, code, reason };
}
