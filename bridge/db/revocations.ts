/**
 * The revoked_certificates table (G9; migration 002_revoked_certificates): written by the certs
 * CLI (`npm run certs -- revoke`), read by the bridge's revocation publisher
 * (bridge/revocation-publisher.ts). Portable SQL, one SERIALIZABLE transaction per call.
 * Serials are stored in schemas/certificate-serial.ts form, so the same certificate is one row
 * however its serial was spelled.
 */
import { normalizeCertificateSerial } from '../../schemas/certificate-serial.js';
import type { Database } from './connection.js';
import { runSerializable, type TransactionRetryOptions } from './transaction-retry.js';

export interface RevokedCertificate {
  serial: string;
  commonName: string;
  reason: string | null;
  revokedAt: Date;
}

export interface RevocationRequest {
  /** any spelling normalizeCertificateSerial accepts */
  serial: string;
  commonName: string;
  reason?: string | null;
}

/** What the publisher polls: answered from the primary key and idx_revoked_certificates_revoked_at. */
export interface RevocationSummary {
  count: number;
  latest: Date | null;
}

interface Row {
  serial: string;
  common_name: string;
  reason: string | null;
  revoked_at: Date;
}

const toRevocation = (row: Row): RevokedCertificate => ({
  serial: row.serial,
  commonName: row.common_name,
  reason: row.reason,
  revokedAt: row.revoked_at,
});

/** Revokes a certificate; revoking it again changes nothing and returns the first revocation. */
export async function revokeCertificate(
  db: Database,
  request: RevocationRequest,
  retry: TransactionRetryOptions = {},
): Promise<{ created: boolean; revocation: RevokedCertificate }> {
  const serial = normalizeCertificateSerial(request.serial);
  if (serial === null) throw new Error(`'${request.serial}' is not a certificate serial number (hexadecimal)`);
  if (request.commonName.trim() === '') throw new Error('a revocation needs the common name of the certificate');
  return runSerializable(
    db,
    'revoke-certificate',
    async (t) => {
      const inserted = await t.oneOrNone<Row>(
        `INSERT INTO revoked_certificates (serial, common_name, reason) VALUES ($1, $2, $3)
         ON CONFLICT (serial) DO NOTHING
         RETURNING serial, common_name, reason, revoked_at`,
        [serial, request.commonName, request.reason ?? null],
      );
      if (inserted !== null) return { created: true, revocation: toRevocation(inserted) };
      const existing = await t.one<Row>(
        'SELECT serial, common_name, reason, revoked_at FROM revoked_certificates WHERE serial = $1',
        [serial],
      );
      return { created: false, revocation: toRevocation(existing) };
    },
    retry,
  );
}

/** Every revocation, oldest first. */
export async function listRevokedCertificates(
  db: Database,
  retry: TransactionRetryOptions = {},
): Promise<RevokedCertificate[]> {
  const rows = await runSerializable(
    db,
    'list-revocations',
    (t) =>
      t.any<Row>(
        'SELECT serial, common_name, reason, revoked_at FROM revoked_certificates ORDER BY revoked_at, serial',
      ),
    retry,
  );
  return rows.map(toRevocation);
}

/**
 * Every revoked serial, with the database's transaction time as the snapshot's time. Broker nodes
 * keep the list with the latest time (broker/revocation-list.ts); a serializable database orders
 * snapshots by their transaction time, whichever bridge process or database node took them,
 * while a bridge's own clock could go backwards across restarts.
 */
export async function revocationSnapshot(
  db: Database,
  retry: TransactionRetryOptions = {},
): Promise<{ takenAt: Date; serials: string[] }> {
  return runSerializable(
    db,
    'revocation-snapshot',
    async (t) => {
      const { now } = await t.one<{ now: Date }>('SELECT now() AS now');
      const rows = await t.any<{ serial: string }>('SELECT serial FROM revoked_certificates ORDER BY serial');
      return { takenAt: now, serials: rows.map((row) => row.serial) };
    },
    retry,
  );
}

export async function revocationSummary(db: Database, retry: TransactionRetryOptions = {}): Promise<RevocationSummary> {
  const row = await runSerializable(
    db,
    'revocation-summary',
    (t) =>
      t.one<{ count: string; latest: Date | null }>(
        'SELECT count(*) AS count, max(revoked_at) AS latest FROM revoked_certificates',
      ),
    retry,
  );
  // node-postgres returns the BIGINT count as a string
  return { count: Number(row.count), latest: row.latest };
}
