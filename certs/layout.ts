/**
 * Where the development bundle keeps its files:
 *
 *   {dir}/ca.crt, ca.key                       the certificate authority
 *   {dir}/broker.crt, broker.key               the broker's server certificate
 *   {dir}/api.crt, api.key                     the REST API's server certificate (the bridge serves it)
 *   {dir}/services/{name}.crt, .key            e.g. bridge
 *   {dir}/devices/{uuid}.crt, .key             one per device
 *   {dir}/observers/{name}.crt, .key           read-only tools (mosquitto_sub, MQTT Explorer)
 *   {dir}/operators/{name}.crt, .key           people and scripts on the REST API (ctl/)
 */
import { join } from 'node:path';
import { isDeviceId } from '../schemas/topics.js';
import { CertificateError, type CertificateRole } from './authority.js';

export const DEFAULT_CERTIFICATE_DIR = 'certs/dev';

export interface CertificateFiles {
  certPath: string;
  keyPath: string;
}

/** Service and observer names become file names and certificate CNs. */
export const CLIENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const ROLE_FOLDERS: Record<CertificateRole, string> = {
  device: 'devices',
  service: 'services',
  observer: 'observers',
  operator: 'operators',
};

export function authorityFiles(dir: string): CertificateFiles {
  return { certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') };
}

export function brokerFiles(dir: string): CertificateFiles {
  return { certPath: join(dir, 'broker.crt'), keyPath: join(dir, 'broker.key') };
}

export function apiFiles(dir: string): CertificateFiles {
  return { certPath: join(dir, 'api.crt'), keyPath: join(dir, 'api.key') };
}

export function roleFolder(dir: string, role: CertificateRole): string {
  return join(dir, ROLE_FOLDERS[role]);
}

export function clientFiles(dir: string, role: CertificateRole, id: string): CertificateFiles {
  assertClientId(role, id);
  const folder = roleFolder(dir, role);
  return { certPath: join(folder, `${id}.crt`), keyPath: join(folder, `${id}.key`) };
}

/** Throws a CertificateError naming what is wrong with a device id or service/observer name. */
export function assertClientId(role: CertificateRole, id: string): void {
  if (role === 'device') {
    if (!isDeviceId(id)) {
      throw new CertificateError(
        `device id '${id}' is not a lowercase UUID (e.g. 3f2b8c1e-9d4a-4e7b-8f00-1c2d3e4f5a6b)`,
      );
    }
    return;
  }
  if (!CLIENT_NAME_PATTERN.test(id)) {
    throw new CertificateError(
      `${role} name '${id}' must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}
