/**
 * Opaque keyset-pagination cursors for the downstream lists (pure). A cursor is base64url JSON of
 * the last item's key; anything else is refused as `invalid`, never passed to SQL.
 */
import { DEVICE_ID_PATTERN } from '../../schemas/limits.js';
import { DownstreamError } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function encodeCursor(key: readonly string[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeCursor(cursor: string, length: number): string[] {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  if (!Array.isArray(key) || key.length !== length || !key.every((part) => typeof part === 'string')) {
    throw new DownstreamError('invalid', 'the cursor is not one this API handed out');
  }
  return key;
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export function checkDeviceId(deviceId: string): void {
  if (!DEVICE_ID_PATTERN.test(deviceId)) {
    throw new DownstreamError('invalid', `device id '${deviceId}' is not a lower-case UUID`);
  }
}

export function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new DownstreamError('invalid', `limit must be an integer from 1 to 1000, got ${limit}`);
  }
}
