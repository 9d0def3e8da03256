import { createHash, randomUUID } from 'node:crypto';

/** Random UUID v4: the key of every row (no sequential keys: CockroachDB spreads them). */
export function newId(): string {
  return randomUUID();
}

/**
 * A name-based UUID (version 5 layout, SHA-1) so the same name always yields the same id:
 * a reading re-sent by a sensor with the same timestamp maps to the same row.
 */
export function nameBasedId(namespace: string, name: string): string {
  const hash = createHash('sha1').update(namespace).update('\u0000').update(name).digest();
  const bytes = Buffer.from(hash.subarray(0, 16));
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
