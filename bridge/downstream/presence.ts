/**
 * Device presence from devices/{id}/status (retained {online, at}): devices.status ('online' or
 * 'offline') and devices.status_at, by the contract's rule "the later `at` wins; at an equal
 * `at`, offline wins" (docs/contract.md, Status and will), repeated in the upsert's WHERE guard so
 * a late will from a crashed broker node (published 45-105 s late) never overwrites the device's
 * newer `online`. A device seen for the first time is registered, as telemetry does (the broker
 * proved its identity with its certificate). last_seen_at only moves forward.
 */
import type { DeviceStatus } from '../../schemas/messages.js';
import type { Database } from '../db/connection.js';
import { runSerializable, type TransactionRetryOptions } from '../db/transaction-retry.js';
import { reportTime } from './command-rules.js';

export async function recordDeviceStatus(
  db: Database,
  deviceId: string,
  status: DeviceStatus,
  nowMs: number,
  retry: TransactionRetryOptions = {},
): Promise<{ applied: boolean }> {
  const at = reportTime(status.at, nowMs);
  const row = await runSerializable(
    db,
    'device-status',
    (t) =>
      t.oneOrNone<{ device_id: string }>(
        `INSERT INTO devices (device_id, device_name, device_type, last_seen_at, status, status_at)
         VALUES ($1, $1, 'edge', $3, $2, $3)
         ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at,
           last_seen_at = GREATEST(COALESCE(devices.last_seen_at, excluded.last_seen_at), excluded.last_seen_at)
         WHERE devices.status_at IS NULL OR devices.status_at < excluded.status_at
           OR (devices.status_at = excluded.status_at AND excluded.status = 'offline' AND devices.status <> 'offline')
         RETURNING device_id`,
        [deviceId, status.online ? 'online' : 'offline', at],
      ),
    retry,
  );
  return { applied: row !== null };
}
