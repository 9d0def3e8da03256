/**
 * Who may use the REST API (bridge/api/), over real mutual TLS with certificates of the project
 * CA, against the real bridge and PostgreSQL at SERIALIZABLE: the TLS handshake refuses clients
 * without a certificate of the CA (G9), the auth hook refuses revoked serials and roles the API
 * does not serve, and a device reaches only its own resources while an operator reaches all.
 */
import { Agent } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { revokeCertificate } from '../../bridge/db/revocations.js';
import { apiClient, apiRequest, errorOf } from '../helpers/api-client.js';
import { startApiSystem, type ApiSystem } from '../helpers/api-system.js';
import { createRogueClientCertificate } from '../helpers/certs.js';
import { makeBatch, makeRecord } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';

const A = '1a2b3c4d-0000-4000-8000-00000000000a';
const B = '1a2b3c4d-0000-4000-8000-00000000000b';
const REVOKED = '1a2b3c4d-0000-4000-8000-00000000000c';

let system: ApiSystem;

beforeAll(async () => {
  system = await startApiSystem({ deviceIds: [A, B, REVOKED], operatorNames: ['alice'], observerNames: ['explorer'] });
  for (const id of [A, B, REVOKED]) {
    expect((await system.device(id).post('/api/v1/sync/telemetry', makeBatch([makeRecord()]))).status).toBe(200);
  }
}, 120_000);

describe('the TLS handshake (G9)', () => {
  it('refuses a client without a certificate', async () => {
    await expect(
      apiRequest(system.url, { ca: system.certificates.ca }, { path: `/api/v1/sync/status/${A}` }),
    ).rejects.toThrow();
  });

  it('refuses a certificate of another CA, even with a device subject', async () => {
    const rogue = await createRogueClientCertificate({ commonName: A, role: 'device' });
    await expect(
      apiRequest(
        system.url,
        { ca: system.certificates.ca, cert: rogue.cert, key: rogue.key },
        { path: `/api/v1/sync/status/${A}` },
      ),
    ).rejects.toThrow();
  });
});

describe('the auth hook', () => {
  it('refuses a role the API does not serve (an observer certificate) with 403 and the reason', async () => {
    const observer = apiClient(system.url, system.certificates.observers['explorer'] ?? null);
    const response = await observer.get(`/api/v1/sync/status/${A}`);
    expect(response.status).toBe(403);
    expect(errorOf(response)).toMatchObject({ code: 'unknown-role' });
    expect(errorOf(response).message).toContain("'observer' is not one of device, operator");
  });

  it('refuses a revoked certificate within seconds, also on a connection that was open before', async () => {
    const files = system.certificates.devices[REVOKED];
    if (files === undefined) throw new Error('no certificate');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    registerCleanup(() => agent.destroy());
    const get = () => apiRequest(system.url, files, { path: `/api/v1/sync/status/${REVOKED}`, agent });
    expect((await get()).status).toBe(200);

    const serial = new X509Certificate(files.cert).serialNumber;
    await revokeCertificate(system.db, { serial, commonName: REVOKED, reason: 'test' });
    await expect.poll(async () => (await get()).status, { timeout: 15_000, interval: 50 }).toBe(401);
    const refused = await get();
    expect(errorOf(refused).code).toBe('revoked-certificate');
    // a fresh connection too
    expect((await apiRequest(system.url, files, { path: `/api/v1/sync/status/${REVOKED}` })).status).toBe(401);
  });

  it('answers a route that does not exist with 404 in the standard body, after authentication', async () => {
    const response = await system.device(A).get('/api/v1/nothing-here');
    expect(response.status).toBe(404);
    expect(errorOf(response).code).toBe('not-found');
  });
});

describe('authorization', () => {
  it("does not let device A read device B's status, device record or telemetry (403)", async () => {
    const deviceA = system.device(A);
    for (const path of [`/api/v1/sync/status/${B}`, `/api/v1/devices/${B}`, `/api/v1/devices/${B}/telemetry`]) {
      const response = await deviceA.get(path);
      expect(response.status, path).toBe(403);
      expect(errorOf(response).code, path).toBe('forbidden');
    }
  });

  it("does not let device A poll device B's commands or registers itself under B's id (403)", async () => {
    expect((await system.device(A).get(`/api/v1/sync/commands/${B}`)).status).toBe(403);
    const register = await system.device(A).post('/api/v1/devices/register', { deviceId: B, name: 'b', type: 'edge' });
    expect(register.status).toBe(403);
  });

  it('keeps operator routes from devices (403) and lets an operator read every device', async () => {
    for (const path of ['/api/v1/devices', '/api/v1/conflicts', '/api/v1/commands', '/api/v1/config/lagging']) {
      expect((await system.device(A).get(path)).status, path).toBe(403);
    }
    const operator = system.operator();
    for (const id of [A, B]) {
      expect((await operator.get(`/api/v1/sync/status/${id}`)).status).toBe(200);
      expect((await operator.get(`/api/v1/devices/${id}/telemetry`)).status).toBe(200);
    }
  });

  it('lets a device read its own status and telemetry', async () => {
    const own = await system.device(A).get(`/api/v1/sync/status/${A}`);
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ deviceId: A, totalSyncedRecords: 1, lastSyncStatus: 'success' });
    const rows = await system.device(A).get(`/api/v1/devices/${A}/telemetry`);
    expect((rows.body as { items: unknown[] }).items).toHaveLength(1);
  });

  it('takes telemetry only from device certificates: an operator gets 403', async () => {
    const response = await system.operator().post('/api/v1/sync/telemetry', makeBatch([makeRecord()]));
    expect(response.status).toBe(403);
  });

  it('counts every request, refused ones included, by route, method and status', async () => {
    const metrics = await system.bridge.metrics.registry.getSingleMetricAsString('http_requests_total');
    expect(metrics).toMatch(
      /http_requests_total\{route="\/api\/v1\/sync\/status\/:deviceId",method="GET",status="403"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /http_requests_total\{route="\/api\/v1\/sync\/status\/:deviceId",method="GET",status="200"\} [1-9]/,
    );
    const latency = await system.bridge.metrics.registry.getSingleMetricAsString('http_request_duration_seconds');
    expect(latency).toContain('route="/api/v1/sync/status/:deviceId"');
  });
});
