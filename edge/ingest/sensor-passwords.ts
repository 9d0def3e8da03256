/**
 * Sensor passwords: scrypt hashes in a PHC-style string, and their verification in constant time.
 *
 *   $scrypt$ln=14,r=8,p=1$<salt>$<hash>      salt and hash in base64 without padding
 *
 * scrypt is node:crypto's (OpenSSL's EVP_PBE_scrypt); the default cost is node's own default
 * (N = 2^14, r = 8, p = 1: 16 MiB and some 50 ms per check), a 16-byte random salt and a 32-byte
 * key. A stored hash may carry other parameters (bounded below, so a users file cannot make one
 * check take gigabytes). Verification derives the key with the stored salt and parameters on the
 * libuv thread pool (crypto.scrypt, never the event loop) and compares with
 * crypto.timingSafeEqual, whose time does not depend on where the keys differ. Nothing here
 * touches files; the users file is parsed in ./sensor-users.ts.
 */
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

export interface ScryptParams {
  /** log2 of N, the CPU/memory cost */
  ln: number;
  /** block size */
  r: number;
  /** parallelization */
  p: number;
}

/** node:crypto's scrypt defaults: N = 16384, r = 8, p = 1 (16 MiB per check). */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { ln: 14, r: 8, p: 1 };

export interface PasswordHash {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;
/** most memory one check may take: 128 · N · r bytes */
const MAX_MEMORY_BYTES = 256 * 1024 * 1024;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/]+$/;

function memoryOf(params: ScryptParams): number {
  return 128 * 2 ** params.ln * params.r;
}

function scryptOptions(params: ScryptParams) {
  // maxmem must exceed 128 · N · r, or OpenSSL refuses; node's default (32 MiB) is too small past ln=17
  return { N: 2 ** params.ln, r: params.r, p: params.p, maxmem: memoryOf(params) + 1024 * 1024 };
}

/** A reason why the parameters are refused, or undefined. */
export function checkScryptParams(params: ScryptParams): string | undefined {
  for (const name of ['ln', 'r', 'p'] as const) {
    const [min, max] = LIMITS[name];
    const value = params[name];
    if (!Number.isInteger(value) || value < min || value > max)
      return `${name} must be an integer from ${min} to ${max}`;
  }
  if (memoryOf(params) > MAX_MEMORY_BYTES) return `ln and r need more than ${MAX_MEMORY_BYTES / 1024 / 1024} MiB`;
  return undefined;
}

const unpadded = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

export function formatPasswordHash({ params, salt, hash }: PasswordHash): string {
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${unpadded(salt)}$${unpadded(hash)}`;
}

/** The hash, or a reason that never quotes the text (it is a secret's hash). */
export function parsePasswordHash(text: string): PasswordHash | { error: string } {
  const parts = text.split('$');
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'scrypt') {
    return { error: 'the password hash is not of the form $scrypt$ln=…,r=…,p=…$salt$hash' };
  }
  const [, , paramText = '', saltText = '', hashText = ''] = parts;
  const match = /^ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})$/.exec(paramText);
  if (!match) return { error: 'the password hash parameters are not ln=…,r=…,p=…' };
  const params = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  const refused = checkScryptParams(params);
  if (refused) return { error: `the password hash parameters are out of range: ${refused}` };
  if (!BASE64.test(saltText) || !BASE64.test(hashText)) {
    return { error: 'the password hash salt and hash must be base64 without padding' };
  }
  const salt = Buffer.from(saltText, 'base64');
  const hash = Buffer.from(hashText, 'base64');
  if (salt.length < 8 || salt.length > 64) return { error: 'the password hash salt must be 8 to 64 bytes' };
  if (hash.length < 16 || hash.length > 64) return { error: 'the password hash must be 16 to 64 bytes' };
  return { params, salt, hash };
}

export async function hashPassword(
  password: string,
  params: ScryptParams = DEFAULT_SCRYPT_PARAMS,
): Promise<PasswordHash> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(Buffer.from(password, 'utf8'), salt, KEY_BYTES, params);
  return { params, salt, hash };
}

/** For start-up only (an environment loader): blocks the event loop for one derivation. */
export function hashPasswordSync(password: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): PasswordHash {
  const salt = randomBytes(SALT_BYTES);
  return { params, salt, hash: scryptSync(Buffer.from(password, 'utf8'), salt, KEY_BYTES, scryptOptions(params)) };
}

function derive(password: Buffer, salt: Buffer, keyBytes: number, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, keyBytes, scryptOptions(params), (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** True when `password` matches; the comparison takes the same time wherever the keys differ. */
export async function verifyPassword(password: Buffer | string, stored: PasswordHash): Promise<boolean> {
  const candidate = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const derived = await derive(candidate, stored.salt, stored.hash.length, stored.params);
  return timingSafeEqual(derived, stored.hash);
}
