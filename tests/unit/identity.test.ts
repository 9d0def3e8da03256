import { describe, expect, it } from 'vitest';
import { identifyClient, type IdentityInput } from '../../broker/identity.js';

const DEVICE_ID = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';

function input(
  subject: Record<string, string | string[]> | undefined,
  overrides: Partial<IdentityInput> = {},
): IdentityInput {
  return {
    certificate: subject === undefined ? {} : { subject },
    authorized: true,
    clientId: typeof subject?.CN === 'string' ? subject.CN : 'x',
    ...overrides,
  };
}

describe('identifyClient', () => {
  it.each([
    [
      { CN: DEVICE_ID, OU: 'device' },
      { role: 'device', id: DEVICE_ID },
    ],
    [
      { CN: 'bridge', OU: 'service' },
      { role: 'service', id: 'bridge' },
    ],
    [
      { CN: 'mqtt-explorer', OU: 'observer', O: 'mqtt-edge-sync' },
      { role: 'observer', id: 'mqtt-explorer' },
    ],
  ])('accepts %o', (subject, identity) => {
    expect(identifyClient(input(subject))).toEqual({ ok: true, identity });
  });

  it('refuses a connection without a certificate (node returns {} or null)', () => {
    expect(identifyClient(input(undefined))).toMatchObject({ ok: false, code: 'no-certificate' });
    expect(identifyClient({ certificate: null, authorized: false, clientId: 'x' })).toMatchObject({
      ok: false,
      code: 'no-certificate',
    });
    expect(identifyClient({ certificate: { subject: {} }, authorized: true, clientId: 'x' })).toMatchObject({
      ok: false,
      code: 'no-certificate',
    });
  });

  it('refuses a certificate the TLS layer did not verify', () => {
    expect(identifyClient(input({ CN: 'bridge', OU: 'service' }, { authorized: false }))).toEqual({
      ok: false,
      code: 'untrusted-certificate',
      reason: 'the client certificate is not signed by the cluster CA',
    });
  });

  it('refuses a subject without CN or OU', () => {
    expect(identifyClient(input({ OU: 'service' }))).toMatchObject({
      ok: false,
      code: 'missing-subject',
      reason: expect.stringContaining('no CN'),
    });
    expect(identifyClient(input({ CN: 'bridge' }))).toMatchObject({
      ok: false,
      code: 'missing-subject',
      reason: expect.stringContaining('no OU'),
    });
  });

  it('refuses a subject with several CNs or OUs', () => {
    expect(identifyClient(input({ CN: ['bridge', 'other'], OU: 'service' }, { clientId: 'bridge' }))).toMatchObject({
      ok: false,
      code: 'ambiguous-subject',
    });
    expect(identifyClient(input({ CN: 'bridge', OU: ['service', 'device'] }))).toMatchObject({
      ok: false,
      code: 'ambiguous-subject',
    });
  });

  it('refuses an unknown role', () => {
    expect(identifyClient(input({ CN: 'bridge', OU: 'admin' }))).toEqual({
      ok: false,
      code: 'unknown-role',
      reason: "the certificate role (OU) 'admin' is not one of device, service, observer",
    });
    expect(identifyClient(input({ CN: 'bridge', OU: 'Service' }))).toMatchObject({ ok: false, code: 'unknown-role' });
  });

  it('refuses a device certificate whose CN is not a UUID', () => {
    expect(identifyClient(input({ CN: 'device-1', OU: 'device' }))).toMatchObject({
      ok: false,
      code: 'invalid-device-id',
    });
    expect(identifyClient(input({ CN: DEVICE_ID.toUpperCase(), OU: 'device' }))).toMatchObject({
      ok: false,
      code: 'invalid-device-id',
    });
  });

  it.each([
    [{ CN: DEVICE_ID, OU: 'device' }, '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c'],
    [{ CN: 'bridge', OU: 'service' }, 'bridge-2'],
    [{ CN: 'mqtt-explorer', OU: 'observer' }, ''],
  ])('refuses %o connecting with clientId %j', (subject, clientId) => {
    const decision = identifyClient(input(subject, { clientId }));
    expect(decision).toMatchObject({ ok: false, code: 'client-id-mismatch' });
    if (!decision.ok) expect(decision.reason).toContain(`does not match the certificate CN '${subject.CN}'`);
  });
});
