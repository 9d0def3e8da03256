/**
 * The REST API's pure decisions (bridge/api/): certificate → identity with revocation, who may
 * touch what, keyset cursors, and the mapping of every error to the standard body.
 */
import { describe, expect, it } from 'vitest';
import { identifyClient } from '../../broker/identity.js';
import { mayAccessDevice, mayAccessOwnedResource, operatorOnly, deviceOnly } from '../../bridge/api/authorization.js';
import { ApiError, errorReply } from '../../bridge/api/errors.js';
import { identifyRequest, type ApiIdentity } from '../../bridge/api/identity.js';
import { CursorError, decodeCursor, encodeCursor, pageFrom } from '../../bridge/api/pagination.js';

const A = '4d5e6f70-0000-4000-8000-00000000000a';
const B = '4d5e6f70-0000-4000-8000-00000000000b';
const certificate = (CN: string, OU: string, serialNumber = '0A1B') => ({ subject: { CN, OU }, serialNumber });
const notRevoked = () => false;

describe('identifyRequest (the auth hook decision)', () => {
  it('maps a device certificate to its device id and an operator certificate to its name', () => {
    expect(identifyRequest({ certificate: certificate(A, 'device'), authorized: true, isRevoked: notRevoked })).toEqual(
      {
        ok: true,
        identity: { kind: 'device', id: A, serial: 'a1b' },
      },
    );
    expect(
      identifyRequest({ certificate: certificate('alice', 'operator'), authorized: true, isRevoked: notRevoked }),
    ).toEqual({
      ok: true,
      identity: { kind: 'operator', id: 'alice', serial: 'a1b' },
    });
  });

  it.each([
    ['no certificate', { certificate: {}, authorized: false }, 401, 'no-certificate'],
    ['another CA', { certificate: certificate(A, 'device'), authorized: false }, 401, 'untrusted-certificate'],
    ['a service certificate', { certificate: certificate('bridge', 'service'), authorized: true }, 403, 'unknown-role'],
    ['an observer certificate', { certificate: certificate('x', 'observer'), authorized: true }, 403, 'unknown-role'],
    [
      'a device CN that is no UUID',
      { certificate: certificate('pump', 'device'), authorized: true },
      403,
      'invalid-device-id',
    ],
    [
      'no OU',
      { certificate: { subject: { CN: 'alice' }, serialNumber: '01' }, authorized: true },
      403,
      'missing-subject',
    ],
  ] as const)('refuses %s', (_what, input, status, code) => {
    expect(identifyRequest({ ...input, isRevoked: notRevoked })).toMatchObject({ ok: false, status, code });
  });

  it('G9: refuses a revoked serial in any spelling of it', () => {
    const revoked = new Set(['a1b']);
    const decision = identifyRequest({
      certificate: certificate(A, 'device', '00:0A:1B'),
      authorized: true,
      isRevoked: (serial) => revoked.has(serial),
    });
    expect(decision).toMatchObject({ ok: false, status: 401, code: 'revoked-certificate' });
  });

  it('shares the mapping with the broker, which refuses the operator role', () => {
    expect(
      identifyClient({ certificate: certificate('alice', 'operator'), authorized: true, clientId: 'alice' }),
    ).toMatchObject({
      ok: false,
      code: 'unknown-role',
    });
  });
});

describe('authorization', () => {
  const device: ApiIdentity = { kind: 'device', id: A };
  const operator: ApiIdentity = { kind: 'operator', id: 'alice' };

  it('lets a device reach only its own device id (403 otherwise); an operator every one', () => {
    expect(mayAccessDevice(device, A)).toEqual({ ok: true });
    expect(mayAccessDevice(device, B)).toMatchObject({ ok: false, status: 403 });
    expect(mayAccessDevice(operator, B)).toEqual({ ok: true });
  });

  it("answers another device's command as not found (404), like one that does not exist", () => {
    expect(mayAccessOwnedResource(device, B, 'command x')).toEqual(mayAccessOwnedResource(device, null, 'command x'));
    expect(mayAccessOwnedResource(device, B, 'command x')).toMatchObject({ ok: false, status: 404 });
    expect(mayAccessOwnedResource(device, A, 'command x')).toEqual({ ok: true });
    expect(mayAccessOwnedResource(operator, B, 'command x')).toEqual({ ok: true });
  });

  it('keeps operator-only and device-only actions apart', () => {
    expect(operatorOnly(device, 'x')).toMatchObject({ ok: false, status: 403 });
    expect(operatorOnly(operator, 'x')).toEqual({ ok: true });
    expect(deviceOnly(operator, 'x')).toMatchObject({ ok: false, status: 403 });
  });
});

describe('keyset cursors', () => {
  it('round-trips the key of the last item and refuses a cursor of another list or garbage', () => {
    const cursor = encodeCursor('telemetry', ['2025-01-01 00:00:00.123456+00', A]);
    expect(decodeCursor('telemetry', cursor, 2)).toEqual(['2025-01-01 00:00:00.123456+00', A]);
    expect(() => decodeCursor('devices', cursor, 1)).toThrow(CursorError);
    expect(() => decodeCursor('devices', 'bm9wZQ', 1)).toThrow(CursorError);
    expect(() => decodeCursor('devices', '%%%', 1)).toThrow(CursorError);
  });

  it('gives a next cursor only when a further row exists (rows fetched with limit + 1)', () => {
    const rows = [1, 2, 3];
    expect(pageFrom(rows, 2, 'n', (row) => [row], String)).toEqual({ items: ['1', '2'], next: encodeCursor('n', [2]) });
    expect(pageFrom(rows, 3, 'n', (row) => [row], String)).toEqual({ items: ['1', '2', '3'], next: null });
  });
});

describe('errorReply (the standard error body)', () => {
  it.each([
    [new ApiError(403, 'forbidden', 'no'), 403, 'forbidden'],
    [new CursorError('bad'), 400, 'invalid-cursor'],
    [
      Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }),
      413,
      'body-too-large',
    ],
    [
      Object.assign(new Error('bad type'), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }),
      415,
      'unsupported-media-type',
    ],
    [
      Object.assign(new Error('body/x must be string'), {
        validation: [{}],
        validationContext: 'body',
        statusCode: 400,
      }),
      400,
      'invalid-request',
    ],
    [
      Object.assign(new Error('stale'), {
        name: 'DownstreamError',
        code: 'conflict',
        httpStatus: 409,
        details: { version: 3 },
      }),
      409,
      'conflict',
    ],
    [
      Object.assign(new Error('gone'), { name: 'DownstreamError', code: 'not-found', httpStatus: 404 }),
      404,
      'not-found',
    ],
    [new Error('connection refused'), 500, 'internal'],
  ])('maps %s to %i %s', (error, status, code) => {
    const reply = errorReply(error, 1024);
    expect(reply.status).toBe(status);
    expect(reply.body.error.code).toBe(code);
    expect(reply.body.error.message.length).toBeGreaterThan(0);
  });

  it('never shows an internal error message to the client', () => {
    expect(errorReply(new Error('password=hunter2'), 1024).body.error.message).not.toContain('hunter2');
  });
});
