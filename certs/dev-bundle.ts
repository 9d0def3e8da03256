/**
 * Development and test certificates on disk (layout in ./layout.ts). Idempotent: an existing CA and
 * existing certificates are reused, only missing ones are issued. An existing certificate that no
 * longer fits (signed by another CA, other role, other broker hosts) is an error, never silently
 * replaced. Keys are written with mode 0600 and never overwritten.
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import {
  CertificateError,
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  type CertificateAuthority,
  type CertificateRole,
  type IssuedCertificate,
} from './authority.js';
import { isIssuedBy, summarizeCertificate } from './inspect.js';
import { apiFiles, authorityFiles, brokerFiles, clientFiles, type CertificateFiles } from './layout.js';

export type { CertificateFiles } from './layout.js';

export const DEFAULT_BROKER_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];
const AUTHORITY_VALID_DAYS = 3650;
const DEFAULT_LEAF_VALID_DAYS = 365;
const AUTHORITY_COMMON_NAME = 'mqtt-edge-sync development CA';
const BROKER_COMMON_NAME = 'mqtt-edge-sync broker';
const API_COMMON_NAME = 'mqtt-edge-sync api';

export interface DevCertificateRequest {
  dir: string;
  deviceIds?: string[];
  serviceNames?: string[];
  observerNames?: string[];
  /** operator certificates (REST API and ctl) */
  operatorNames?: string[];
  /**
   * DNS names and IP addresses the broker certificate must cover. When omitted, an existing broker
   * certificate is reused as it is and a new one covers localhost, 127.0.0.1 and ::1.
   */
  brokerHosts?: string[];
  /** validity of newly issued leaf certificates; default 365 */
  validDays?: number;
}

export interface CertificateBundle {
  dir: string;
  ca: CertificateFiles;
  broker: CertificateFiles;
  services: Record<string, CertificateFiles>;
  devices: Record<string, CertificateFiles>;
  observers: Record<string, CertificateFiles>;
  operators: Record<string, CertificateFiles>;
}

export interface EnsuredCertificate extends CertificateFiles {
  /** false when the files already existed and were reused */
  created: boolean;
}

export interface OpenedAuthority extends EnsuredCertificate {
  dir: string;
  authority: CertificateAuthority;
}

export async function ensureDevCertificates(request: DevCertificateRequest): Promise<CertificateBundle> {
  const validDays = request.validDays ?? DEFAULT_LEAF_VALID_DAYS;
  const opened = await openCertificateAuthority(request.dir, { createIfMissing: true });
  const issueClients = (role: CertificateRole, ids: string[] = []) =>
    Promise.all(ids.map(async (id) => [id, await ensureClientCertificate(opened, role, id, validDays)] as const));

  const [broker, services, devices, observers, operators] = await Promise.all([
    ensureBrokerCertificate(opened, request.brokerHosts, validDays),
    issueClients('service', request.serviceNames),
    issueClients('device', request.deviceIds),
    issueClients('observer', request.observerNames),
    issueClients('operator', request.operatorNames),
  ]);
  return {
    dir: request.dir,
    ca: filesOnly(opened),
    broker: filesOnly(broker),
    services: recordOf(services),
    devices: recordOf(devices),
    observers: recordOf(observers),
    operators: recordOf(operators),
  };
}

/**
 * Reads the CA in `dir`; creates it when missing and `createIfMissing` is set, otherwise throws a
 * CertificateError that says how to create one.
 */
export async function openCertificateAuthority(
  dir: string,
  options: { createIfMissing: boolean },
): Promise<OpenedAuthority> {
  const files = authorityFiles(dir);
  const existing = await readPair(files);
  if (existing) return { ...files, dir, authority: existing, created: false };
  if (!options.createIfMissing) {
    throw new CertificateError(
      `no certificate authority in ${dir} (expected ${files.certPath} and ${files.keyPath}): run the 'init' command first`,
    );
  }
  const authority = await createCertificateAuthority({
    commonName: AUTHORITY_COMMON_NAME,
    validDays: AUTHORITY_VALID_DAYS,
  });
  await writePair(files, authority);
  return { ...files, dir, authority, created: true };
}

/** `hosts` undefined: reuse any existing broker certificate, or issue one for DEFAULT_BROKER_HOSTS. */
export function ensureBrokerCertificate(
  opened: OpenedAuthority,
  requestedHosts: string[] | undefined,
  validDays: number = DEFAULT_LEAF_VALID_DAYS,
): Promise<EnsuredCertificate> {
  return ensureServerCertificate(
    opened,
    brokerFiles(opened.dir),
    BROKER_COMMON_NAME,
    'broker',
    requestedHosts,
    validDays,
  );
}

/**
 * The REST API's server certificate ({dir}/api.crt, served by the bridge with API_TLS_CERT);
 * `hosts` undefined: reuse an existing one, or issue one for DEFAULT_BROKER_HOSTS (localhost).
 */
export function ensureApiCertificate(
  opened: OpenedAuthority,
  requestedHosts: string[] | undefined,
  validDays: number = DEFAULT_LEAF_VALID_DAYS,
): Promise<EnsuredCertificate> {
  return ensureServerCertificate(opened, apiFiles(opened.dir), API_COMMON_NAME, 'API', requestedHosts, validDays);
}

async function ensureServerCertificate(
  opened: OpenedAuthority,
  files: CertificateFiles,
  commonName: string,
  label: string,
  requestedHosts: string[] | undefined,
  validDays: number,
): Promise<EnsuredCertificate> {
  const hosts = requestedHosts ?? [...DEFAULT_BROKER_HOSTS];
  if (hosts.length === 0)
    throw new CertificateError(`the ${label} certificate needs at least one host name or IP address`);
  const existing = await readPair(files);
  if (existing) {
    assertIssuedBy(files, existing, opened);
    if (requestedHosts === undefined) return { ...files, created: false };
    const covered = new Set(summarizeCertificate(existing.certPem).subjectAltNames.map(altNameValue));
    const missing = hosts.filter((host) => !covered.has(normalizeIp(host)));
    if (missing.length > 0) {
      throw new CertificateError(
        `${files.certPath} does not cover ${missing.join(', ')}: delete ${files.certPath} and ${files.keyPath} to issue a new one`,
      );
    }
    return { ...files, created: false };
  }
  const issued = await issueServerCertificate(opened.authority, {
    commonName,
    dnsNames: hosts.filter((host) => isIP(host) === 0),
    ipAddresses: hosts.filter((host) => isIP(host) !== 0),
    validDays,
  });
  await writePair(files, issued);
  return { ...files, created: true };
}

export async function ensureClientCertificate(
  opened: OpenedAuthority,
  role: CertificateRole,
  id: string,
  validDays: number = DEFAULT_LEAF_VALID_DAYS,
): Promise<EnsuredCertificate> {
  const files = clientFiles(opened.dir, role, id);
  const existing = await readPair(files);
  if (existing) {
    assertIssuedBy(files, existing, opened);
    const summary = summarizeCertificate(existing.certPem);
    if (summary.commonName !== id || summary.organizationalUnit !== role) {
      throw new CertificateError(
        `${files.certPath} is for CN=${summary.commonName ?? '?'} OU=${summary.organizationalUnit ?? '?'}, expected CN=${id} OU=${role}`,
      );
    }
    return { ...files, created: false };
  }
  const issued = await issueClientCertificate(opened.authority, { commonName: id, role, validDays });
  await writePair(files, issued);
  return { ...files, created: true };
}

/** Both files, or null when neither exists; one without the other is an error. */
async function readPair(files: CertificateFiles): Promise<IssuedCertificate | null> {
  const [certExists, keyExists] = await Promise.all([exists(files.certPath), exists(files.keyPath)]);
  if (!certExists && !keyExists) return null;
  if (certExists !== keyExists) {
    const [present, absent] = certExists ? [files.certPath, files.keyPath] : [files.keyPath, files.certPath];
    throw new CertificateError(
      `found ${present} but not ${absent}: restore it, or delete ${present} to issue a new pair`,
    );
  }
  const [certPem, keyPem] = await Promise.all([readFile(files.certPath, 'utf8'), readFile(files.keyPath, 'utf8')]);
  return { certPem, keyPem };
}

/** Key first (0600), then the certificate; 'wx' refuses to overwrite anything. */
async function writePair(files: CertificateFiles, issued: IssuedCertificate): Promise<void> {
  await mkdir(dirname(files.keyPath), { recursive: true, mode: 0o700 });
  await writeFile(files.keyPath, issued.keyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(files.certPath, issued.certPem, { mode: 0o644, flag: 'wx' });
}

function assertIssuedBy(files: CertificateFiles, existing: IssuedCertificate, opened: OpenedAuthority): void {
  if (!isIssuedBy(existing.certPem, opened.authority.certPem)) {
    throw new CertificateError(
      `${files.certPath} was not issued by ${opened.certPath}: delete ${files.certPath} and ${files.keyPath} to issue a new one`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** 'DNS:localhost' → 'localhost', 'IP Address:127.0.0.1' → '127.0.0.1' (node prints IPv6 expanded). */
function altNameValue(altName: string): string {
  const value = altName.slice(altName.indexOf(':') + 1);
  return altName.startsWith('IP Address:') ? normalizeIp(value) : value;
}

function normalizeIp(value: string): string {
  return isIP(value) === 6 ? new URL(`http://[${value}]/`).hostname.slice(1, -1) : value;
}

function filesOnly(files: CertificateFiles): CertificateFiles {
  return { certPath: files.certPath, keyPath: files.keyPath };
}

function recordOf(entries: ReadonlyArray<readonly [string, CertificateFiles]>): Record<string, CertificateFiles> {
  return Object.fromEntries(entries.map(([id, files]) => [id, filesOnly(files)]));
}
