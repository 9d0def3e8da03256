/**
 * Who may touch what (pure). A device only its own resources; an operator everything.
 *   - a device id in the path or query that is not the caller's own: 403 (the id was the caller's
 *     input, nothing leaks);
 *   - a command (or other resource found by its own id) that belongs to another device: 404, the
 *     same answer as for an id that does not exist, so ids of other devices cannot be probed;
 *   - operator-only routes (lists across devices, creating commands, config writes): 403 for a device.
 */
import type { ApiIdentity } from './identity.js';

export type AccessDecision = { ok: true } | { ok: false; status: 403 | 404; code: string; reason: string };

const ALLOW: AccessDecision = { ok: true };

export function mayAccessDevice(identity: ApiIdentity, deviceId: string): AccessDecision {
  if (identity.kind === 'operator' || identity.id === deviceId) return ALLOW;
  return {
    ok: false,
    status: 403,
    code: 'forbidden',
    reason: `device '${identity.id}' may only access its own resources, not those of device '${deviceId}'`,
  };
}

/** For a resource looked up by its own id: another device's resource is reported as not found. */
export function mayAccessOwnedResource(
  identity: ApiIdentity,
  ownerDeviceId: string | null,
  what: string,
): AccessDecision {
  if (ownerDeviceId !== null && (identity.kind === 'operator' || identity.id === ownerDeviceId)) return ALLOW;
  return { ok: false, status: 404, code: 'not-found', reason: `${what} does not exist` };
}

export function operatorOnly(identity: ApiIdentity, action: string): AccessDecision {
  if (identity.kind === 'operator') return ALLOW;
  return { ok: false, status: 403, code: 'forbidden', reason: `${action} needs an operator certificate` };
}

/** What a device may do only for itself: the device in the request must be its own. */
export function deviceOnly(identity: ApiIdentity, action: string): AccessDecision {
  if (identity.kind === 'device') return ALLOW;
  return { ok: false, status: 403, code: 'forbidden', reason: `${action} is for device certificates only` };
}
