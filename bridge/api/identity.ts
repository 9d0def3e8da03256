/**
 * Who an HTTP request comes from (pure; no I/O): the peer certificate of its TLS connection,
 * mapped by common/certificate-identity.ts exactly as the broker maps it, then checked against
 * the revocation list. This is the one decision the API's auth hook (./auth.ts) asks; a token
 * scheme (a later issue) would be a second source of an ApiIdentity here, nothing else changes.
 *
 * G9: a certificate that is revoked, expired or not issued by the CA is refused. Expired and
 * foreign certificates never get this far (TLS with rejectUnauthorized refuses the handshake);
 * `authorized` is checked again in case a listener is ever configured otherwise. A revoked
 * serial is refused on every request, so an open keep-alive connection is refused too.
 */
import { identityFromCertificate, type PeerCertificateLike } from '../../common/certificate-identity.js';

export type ApiRole = 'device' | 'operator';
/** device: its own resources only; operator: everything (service and observer certificates are refused) */
export const API_ROLES: readonly ApiRole[] = ['device', 'operator'];

export interface ApiIdentity {
  kind: ApiRole;
  /** a device UUID or an operator name (the certificate's CN) */
  id: string;
  serial?: string;
}

export type ApiIdentityDecision =
  | { ok: true; identity: ApiIdentity }
  | { ok: false; status: 401 | 403; code: string; reason: string };

export interface ApiIdentityInput {
  certificate: PeerCertificateLike | null | undefined;
  authorized: boolean;
  isRevoked(serial: string): boolean;
}

export function identifyRequest(input: ApiIdentityInput): ApiIdentityDecision {
  const decision = identityFromCertificate({
    certificate: input.certificate,
    authorized: input.authorized,
    roles: API_ROLES,
    servedBy: 'the REST API',
  });
  if (!decision.ok) {
    const status = decision.code === 'no-certificate' || decision.code === 'untrusted-certificate' ? 401 : 403;
    return { ok: false, status, code: decision.code, reason: decision.reason };
  }
  const { role, id, serial } = decision.identity;
  // G9: revocation names the serial, not the CN (a device keeps its id with a new certificate)
  if (serial === undefined) {
    return {
      ok: false,
      status: 401,
      code: 'no-serial',
      reason: 'the client certificate has no readable serial number',
    };
  }
  if (input.isRevoked(serial)) {
    return {
      ok: false,
      status: 401,
      code: 'revoked-certificate',
      reason: `the certificate of '${id}' (serial ${serial}) is revoked`,
    };
  }
  return { ok: true, identity: { kind: role, id, serial } };
}
