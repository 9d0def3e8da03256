/**
 * The revocation commands of the certs CLI (G9), on the control-plane database (DATABASE_URL, the
 * bridge's database; migrated first, idempotently, like the bridge does at start):
 *
 *   revoke --serial HEX [--cn NAME] | --cert FILE  [--reason TEXT]
 *       a row in revoked_certificates; the bridge publishes the new list to the broker nodes
 *       within a poll interval (bridge/revocation-publisher.ts), which close the certificate's
 *       connections and refuse it from then on (broker/revocation-sync.ts). With --serial alone the
 *       common name is looked up among the certificates under --dir.
 *   revocations
 *       lists the revoked certificates, oldest first
 *   crl --out FILE [--days N]
 *       writes an X.509 CRL signed by the CA under --dir (certs/crl.ts), next update in N days
 *       (default 7), e.g. for BROKER_CRL_FILE so that a broker refuses the certificates from start
 *
 * Every function takes the database URL explicitly; certs/cli.ts reads it from the environment.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { closeDatabase, openDatabase, type Database } from '../bridge/db/connection.js';
import { migrate } from '../bridge/db/migrate.js';
import { listRevokedCertificates, revokeCertificate, type RevokedCertificate } from '../bridge/db/revocations.js';
import { normalizeCertificateSerial } from '../schemas/certificate-serial.js';
import { CertificateError } from './authority.js';
import { createCrl } from './crl.js';
import { openCertificateAuthority } from './dev-bundle.js';
import { summarizeCertificate } from './inspect.js';
import { authorityFiles, brokerFiles, roleFolder } from './layout.js';

export interface RevocationOutput {
  log(line: string): void;
}

export interface RevokeRequest {
  databaseUrl: string | undefined;
  /** the certificate folder, to find the common name of a --serial */
  dir: string;
  serial?: string | undefined;
  certFile?: string | undefined;
  commonName?: string | undefined;
  reason?: string | undefined;
}

async function withDatabase<T>(databaseUrl: string | undefined, command: string, work: (db: Database) => Promise<T>) {
  if (databaseUrl === undefined || databaseUrl === '') {
    throw new CertificateError(`${command} needs DATABASE_URL: the control plane's database (postgres://…)`);
  }
  const db = openDatabase({ connectionString: databaseUrl, applicationName: 'certs-cli', poolSize: 1 });
  try {
    await migrate(db);
    return await work(db);
  } finally {
    await closeDatabase(db);
  }
}

/** Revokes one certificate; returns the revocation and whether it is new. */
export async function revokeFromCli(
  request: RevokeRequest,
  out: RevocationOutput,
): Promise<{ created: boolean; revocation: RevokedCertificate }> {
  const { serial, commonName } = await identifyCertificate(request);
  const result = await withDatabase(request.databaseUrl, 'revoke', (db) =>
    revokeCertificate(db, { serial, commonName, reason: request.reason ?? null }),
  );
  const { revocation } = result;
  const why = revocation.reason ? ` (${revocation.reason})` : '';
  out.log(
    result.created
      ? `revoked ${revocation.serial} CN=${revocation.commonName}${why}; the broker nodes close its connections once the bridge publishes the list`
      : `already revoked ${revocation.serial} CN=${revocation.commonName}${why} since ${revocation.revokedAt.toISOString()}`,
  );
  return result;
}

export async function listRevocationsFromCli(databaseUrl: string | undefined, out: RevocationOutput): Promise<void> {
  const revocations = await withDatabase(databaseUrl, 'revocations', (db) => listRevokedCertificates(db));
  if (revocations.length === 0) {
    out.log('no revoked certificates');
    return;
  }
  for (const revocation of revocations) {
    out.log(
      `${revocation.revokedAt.toISOString()}  ${revocation.serial}  CN=${revocation.commonName}` +
        (revocation.reason ? `  ${revocation.reason}` : ''),
    );
  }
}

export async function writeCrlFromCli(
  request: { databaseUrl: string | undefined; dir: string; outFile: string | undefined; days: number | undefined },
  out: RevocationOutput,
): Promise<void> {
  if (request.outFile === undefined || request.outFile === '') {
    throw new CertificateError('crl needs --out FILE');
  }
  const opened = await openCertificateAuthority(request.dir, { createIfMissing: false });
  const revocations = await withDatabase(request.databaseUrl, 'crl', (db) => listRevokedCertificates(db));
  const now = new Date();
  const nextUpdate = new Date(now.getTime() + (request.days ?? 7) * 24 * 60 * 60 * 1000);
  const pem = createCrl(opened.authority, {
    entries: revocations.map((revocation) => ({
      serial: revocation.serial,
      revokedAt: revocation.revokedAt,
      reason: revocation.reason,
    })),
    thisUpdate: now,
    nextUpdate,
    // seconds since the epoch: increases with every CRL this CA issues (RFC 5280 5.2.3)
    crlNumber: Math.floor(now.getTime() / 1000),
  });
  await writeFile(request.outFile, pem, { mode: 0o644 });
  out.log(
    `wrote ${request.outFile}: ${revocations.length} revoked certificate(s), signed by ${opened.certPath}, next update ${nextUpdate.toISOString()}`,
  );
}

/** The serial and common name to revoke, from --cert, or from --serial and --cn / the --dir bundle. */
async function identifyCertificate(request: RevokeRequest): Promise<{ serial: string; commonName: string }> {
  if ((request.serial === undefined) === (request.certFile === undefined)) {
    throw new CertificateError('revoke needs exactly one of --serial HEX and --cert FILE');
  }
  if (request.certFile !== undefined) {
    let pem: string;
    try {
      pem = await readFile(request.certFile, 'utf8');
    } catch (error) {
      throw new CertificateError(
        `cannot read ${request.certFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
    let summary;
    try {
      summary = summarizeCertificate(pem);
    } catch {
      throw new CertificateError(`${request.certFile} is not a PEM certificate`);
    }
    const serial = normalizeCertificateSerial(summary.serialNumber);
    const commonName = request.commonName ?? summary.commonName;
    if (serial === null || commonName === undefined) {
      throw new CertificateError(`${request.certFile} has no usable serial number or common name`);
    }
    return { serial, commonName };
  }
  const serial = normalizeCertificateSerial(request.serial ?? '');
  if (serial === null) {
    throw new CertificateError(`--serial '${request.serial ?? ''}' is not a hexadecimal certificate serial number`);
  }
  const commonName = request.commonName ?? (await commonNameInBundle(request.dir, serial));
  if (commonName === undefined) {
    throw new CertificateError(
      `no certificate with serial ${serial} under ${request.dir}: give its common name with --cn NAME`,
    );
  }
  return { serial, commonName };
}

/** The CN of the certificate with `serial` among the CA, broker and client certificates under `dir`. */
async function commonNameInBundle(dir: string, serial: string): Promise<string | undefined> {
  const files = [authorityFiles(dir).certPath, brokerFiles(dir).certPath];
  for (const role of ['device', 'service', 'observer'] as const) {
    const folder = roleFolder(dir, role);
    const names = await readdir(folder).catch(() => [] as string[]);
    files.push(...names.filter((name) => name.endsWith('.crt')).map((name) => join(folder, name)));
  }
  for (const file of files) {
    const pem = await readFile(file, 'utf8').catch(() => undefined);
    if (pem === undefined) continue;
    const certificate = new X509Certificate(pem);
    if (normalizeCertificateSerial(certificate.serialNumber) === serial) {
      return summarizeCertificate(pem).commonName;
    }
  }
  return undefined;
}
