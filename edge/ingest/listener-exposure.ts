/**
 * Whether the sensor listener may start on an address, given how it authenticates (pure).
 *
 * On loopback only processes of the device itself can connect, so anonymous sensors are fine
 * there (the default, SENSOR_HOST=127.0.0.1). Anywhere else, anyone on the network could publish
 * readings that end up in the control plane and read every sensor's traffic, so the listener
 * refuses to start without authentication (users or client certificates), unless anonymous
 * access is asked for explicitly, which it then warns about at every start.
 *
 * Loopback means an IPv4 address in 127.0.0.0/8, ::1, an IPv4-mapped 127.x address, or the name
 * `localhost`. Any other host name counts as non-loopback: its address is unknown until resolved,
 * and 0.0.0.0 / :: are every interface.
 */
import { BlockList, isIP } from 'node:net';

// node:net BlockList matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) against IPv4 rules
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  if (family === 0) return false;
  return LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

export interface ExposureInput {
  host: string;
  /** users or client certificates are configured */
  authenticated: boolean;
  allowAnonymous: boolean;
}

export type ExposureDecision = { ok: true; warning?: string } | { ok: false; reason: string };

export function checkListenerExposure({ host, authenticated, allowAnonymous }: ExposureInput): ExposureDecision {
  if (authenticated || isLoopbackHost(host)) return { ok: true };
  const risk = 'anyone who can reach it can publish readings and read sensors/#';
  if (allowAnonymous) {
    return {
      ok: true,
      warning: `the sensor listener on ${host} accepts anonymous clients from the network (SENSOR_ALLOW_ANONYMOUS=true): ${risk}`,
    };
  }
  return {
    ok: false,
    reason:
      `SENSOR_HOST=${host} is not a loopback address and the sensor listener has no authentication: ${risk}. ` +
      'Configure SENSOR_USERS_FILE (or SENSOR_USERNAME and SENSOR_PASSWORD_FILE) or client certificates ' +
      '(SENSOR_TLS_CERT, SENSOR_TLS_KEY, SENSOR_TLS_CA), or set SENSOR_ALLOW_ANONYMOUS=true to accept the risk',
  };
}
