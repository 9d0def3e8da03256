/**
 * Who a connecting MQTT client is, from its TLS client certificate (pure; no I/O).
 * The subject's OU is the role and its CN the identity; the MQTT clientId must equal the CN, so a
 * device cannot open a session (or take one over) under another client's id.
 */
import { normalizeCertificateSerial } from '../schemas/certificate-serial.js';
import { isDeviceId } from '../schemas/topics.js';

export type ClientRole = 'device' | 'service' | 'observer';
export const CLIENT_ROLES: readonly ClientRole[] = ['device', 'service', 'observer'];

export interface ClientIdentity {
  role: ClientRole;
  /** the certificate's CN: a device UUID, or a service/observer name */
  id: string;
  /** the certificate's serial number (schemas/certificate-serial.ts form), what revocation names (G9) */
  serial?: string;
}

export type IdentityRefusalCode =
  | 'no-certificate'
  | 'untrusted-certificate'
  | 'missing-subject'
  | 'ambiguous-subject'
  | 'unknown-role'
  | 'invalid-device-id'
  | 'client-id-mismatch';

export type IdentityDecision =
  | { ok: true; identity: ClientIdentity }
  | { ok: false; code: IdentityRefusalCode; reason: string };

/** The part of node's tls PeerCertificate this module reads (node gives `{}` when there is none). */
export interface PeerCertificateLike {
  subject?: Partial<Record<string, string | string[] | undefined>> | null;
  /** hexadecimal, as node:tls gives it */
  serialNumber?: string;
}

export interface IdentityInput {
  certificate: PeerCertificateLike | null | undefined;
  /** TLSSocket.authorized: the chain verified against the broker's CA */
  authorized: boolean;
  /** the clientId of the CONNECT packet, as sent */
  clientId: string;
}

export function identifyClient(input: IdentityInput): IdentityDecision {
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
  if (!isClientRole(role)) {
    return refuse('unknown-role', `the certificate role (OU) '${role}' is not one of ${CLIENT_ROLES.join(', ')}`);
  }
  if (role === 'device' && !isDeviceId(commonName)) {
    return refuse('invalid-device-id', `the device certificate CN '${commonName}' is not a device UUID`);
  }
  if (input.clientId !== commonName) {
    return refuse(
      'client-id-mismatch',
      `clientId '${input.clientId}' does not match the certificate CN '${commonName}'; connect with clientId = CN`,
    );
  }
  const serial = input.certificate?.serialNumber ? normalizeCertificateSerial(input.certificate.serialNumber) : null;
  return { ok: true, identity: serial === null ? { role, id: commonName } : { role, id: commonName, serial } };
}

function isClientRole(value: string): value is ClientRole {
  return (CLIENT_ROLES as readonly string[]).includes(value);
}

function refuse(code: IdentityRefusalCode, reason: string): IdentityDecision {
  return { ok: false, code, reason };
}
