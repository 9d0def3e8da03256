-- Certificate revocation (G9): the serial numbers of client certificates the cluster no longer
-- accepts. Written by the certs CLI (`npm run certs -- revoke`), read by the bridge every second
-- (bridge/revocation-publisher.ts), which publishes the list to the broker nodes on the retained
-- control topic control/revocations. Identical in both variants: portable SQL only, no triggers
-- and no LISTEN/NOTIFY (the bridge polls).
--   serial       the certificate serial number as lower-case hex without leading zeros
--                (schemas/revocation.ts normalizeCertificateSerial), unique per CA
--   common_name  the certificate's CN (device id, service or observer name), for people
--   revoked_at   the bridge polls count(*) and max(revoked_at), answered from this index

CREATE TABLE IF NOT EXISTS revoked_certificates (
  serial TEXT PRIMARY KEY,
  common_name TEXT NOT NULL,
  reason TEXT,
  revoked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_revoked_certificates_revoked_at ON revoked_certificates (revoked_at);
