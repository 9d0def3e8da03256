/**
 * Who a connecting MQTT client is, from its TLS client certificate (pure; no I/O).
 * The certificate → identity mapping is common/certificate-identity.ts, shared with the REST API
 * (bridge/api/auth.ts); this module adds the broker's roles and the MQTT rule: the clientId must
 * equal the CN, so a device cannot open a session (or take one over) under another client's id.
 */
import {
  identityFromCertificate,
  type CertificateIdentity,
  type CertificateRefusalCode,
  type PeerCertificateLike,
} from '../common/certificate-identity.js';

export type { PeerCertificateLike } from '../common/certificate-identity.js';

export type ClientRole = 'device' | 'service' | 'observer';
/** operator certificates are for the REST API only: the broker refuses them as 'unknown-role' */
export const CLIENT_ROLES: readonly ClientRole[] = ['device', 'service', 'observer'];

export type ClientIdentity = CertificateIdentity<ClientRole>;

export type IdentityRefusalCode = CertificateRefusalCode | 'client-id-mismatch';

export type IdentityDecision =
  | { ok: true; identity: ClientIdentity }
  | { ok: false; code: IdentityRefusalCode; reason: string };

export interface IdentityInput {
  certificate: PeerCertificateLike | null | undefined;
  /** TLSSocket.authorized: the chain verified against the broker's CA */
  authorized: boolean;
  /** the clientId of the CONNECT packet, as sent */
  clientId: string;
}

export function identifyClient(input: IdentityInput): IdentityDecision {
  const decision = identityFromCertificate({
    certificate: input.certificate,
    authorized: input.authorized,
    roles: CLIENT_ROLES,
  });
  if (!decision.ok) return decision;
  const commonName = decision.identity.id;
  if (input.clientId !== commonName) {
    return {
      ok: false,
      code: 'client-id-mismatch',
      reason: `clientId '${input.clientId}' does not match the certificate CN '${commonName}'; connect with clientId = CN`,
    };
  }
  return decision;
}
