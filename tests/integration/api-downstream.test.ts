/**
 * Commands and config over the REST API, on the real bridge's command and config services
 * (bridge/downstream/, G6), PostgreSQL at SERIALIZABLE and mutual TLS: the operator creates,
 * lists and cancels commands and writes config; a device polls its commands and reports results
 * over HTTP; another device learns nothing of them (404, not 403); every bad input is a clear 4xx.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_COMMAND_PAYLOAD_BYTES, MAX_COMMAND_RESULT_BYTES } from '../../schemas/limits.js';
import { errorOf, type ApiClient } from '../helpers/api-client.js';
import { startApiSystem, type ApiSystem } from '../helpers/api-system.js';

const A = '5e6f7081-0000-4000-8000-00000000000a';
const B = '5e6f7081-0000-4000-8000-00000000000b';
const UNKNOWN = '5e6f7081-0000-4000-8000-0000000000ff';

let system: ApiSystem;
let operator: ApiClient;

type Command = { commandId: string; deviceId: string; type: string; status: string; result?: unknown };
type Page<T> = { items: T[]; next: string | null };

beforeAll(async () => {
  system = await startApiSystem({ deviceIds: [A, B] });
  operator = system.operator();
  for (const id of [A, B]) {
    expect((await system.device(id).post('/api/v1/devices/register', { name: id, type: 'edge' })).status).toBe(201);
  }
}, 120_000);

const send = async (deviceId: string, type: string, payload: unknown = {}) => {
  const response = await operator.post('/api/v1/commands', { deviceId, type, payload });
  expect(response.status, response.text).toBe(201);
  return response.body as Command;
};
const report = (device: string, commandId: string, status: string, extra: object = {}) =>
  system.device(device).post(`/api/v1/sync/ack/${commandId}`, { status, at: new Date().toISOString(), ...extra });

describe('commands', () => {
  it('goes from creation to executed: the device polls it and reports over HTTP; the status counts it while live', async () => {
    const command = await send(A, 'ping');
    expect(command).toMatchObject({ deviceId: A, type: 'ping', status: 'pending' });

    const polled = await system.device(A).get(`/api/v1/sync/commands/${A}`);
    expect((polled.body as { items: Command[] }).items.map((item) => item.commandId)).toContain(command.commandId);
    expect((await system.device(A).get(`/api/v1/sync/status/${A}`)).body).toMatchObject({ pendingCommands: 1 });

    const delivered = await report(A, command.commandId, 'delivered');
    expect(delivered.status).toBe(200);
    expect(delivered.body).toMatchObject({ applied: true, command: { status: 'delivered' } });
    expect((await report(A, command.commandId, 'delivered')).body).toMatchObject({ applied: false });
    const executed = await report(A, command.commandId, 'executed', { result: { pong: true } });
    expect(executed.body).toMatchObject({ applied: true, command: { status: 'executed', result: { pong: true } } });

    const stored = await operator.get(`/api/v1/commands/${command.commandId}`);
    expect(stored.body).toMatchObject({ status: 'executed', result: { pong: true } });
    expect((await system.device(A).get(`/api/v1/sync/status/${A}`)).body).toMatchObject({ pendingCommands: 0 });
  });

  it("hides a command from another device: B's ack and read of A's command are 404, like an unknown id", async () => {
    const command = await send(A, 'sync-now');
    const foreignAck = await report(B, command.commandId, 'delivered');
    expect(foreignAck.status).toBe(404);
    const unknownAck = await report(B, '5e6f7081-0000-4000-8000-000000000abc', 'delivered');
    expect(unknownAck.status).toBe(404);
    expect(errorOf(foreignAck).code).toBe(errorOf(unknownAck).code);
    expect((await system.device(B).get(`/api/v1/commands/${command.commandId}`)).status).toBe(404);
    expect((await system.device(A).get(`/api/v1/commands/${command.commandId}`)).status).toBe(200);
    expect((await operator.get(`/api/v1/commands/${command.commandId}`)).body).toMatchObject({ status: 'pending' });
  });

  it('refuses bad commands with a clear 4xx and creates none of them', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ deviceId: A, type: 'Not A Type', payload: {} }, 400, /body\/type must match pattern/],
      [{ deviceId: A, type: 'set-setting', payload: { key: 'agent.syncIntervalMs', value: 5 } }, 422, /set-setting/],
      [{ deviceId: A, type: 'ping', payload: { extra: 1 } }, 422, /ping payload/],
      [{ deviceId: A, type: 'app.x', payload: { blob: 'x'.repeat(MAX_COMMAND_PAYLOAD_BYTES) } }, 422, /more than/],
      [{ deviceId: A, type: 'ping', payload: [] }, 400, /payload must be object/],
      [{ deviceId: A, type: 'ping', expiresAt: '2001-01-01T00:00:00Z' }, 422, /not in the future/],
      [{ deviceId: UNKNOWN, type: 'ping' }, 404, /./],
    ];
    const before = ((await operator.get(`/api/v1/commands?deviceId=${A}&limit=1000`)).body as Page<Command>).items
      .length;
    for (const [body, status, message] of cases) {
      const response = await operator.post('/api/v1/commands', body);
      expect(response.status, JSON.stringify(body).slice(0, 100)).toBe(status);
      expect(errorOf(response).message).toMatch(message);
    }
    const after = ((await operator.get(`/api/v1/commands?deviceId=${A}&limit=1000`)).body as Page<Command>).items
      .length;
    expect(after).toBe(before);
  });

  it('refuses reports that break command-result.schema.json with 400', async () => {
    const command = await send(A, 'ping');
    expect((await report(A, command.commandId, 'canceled')).status).toBe(400);
    const noTime = await system.device(A).post(`/api/v1/sync/ack/${command.commandId}`, { status: 'delivered' });
    expect(noTime.status).toBe(400);
    expect(errorOf(noTime).message).toContain("must have required property 'at'");
    const huge = await report(A, command.commandId, 'executed', {
      result: { blob: 'x'.repeat(MAX_COMMAND_RESULT_BYTES) },
    });
    expect(huge.status).toBe(413);
    expect(errorOf(huge).message).toContain(String(MAX_COMMAND_RESULT_BYTES));
    expect((await operator.get(`/api/v1/commands/${command.commandId}`)).body).toMatchObject({ status: 'pending' });
  });

  it('cancels a pending command, and answers 409 with its status when it is too late', async () => {
    const command = await send(B, 'ping');
    const canceled = await operator.post(`/api/v1/commands/${command.commandId}/cancel`);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ status: 'canceled' });
    const again = await operator.post(`/api/v1/commands/${command.commandId}/cancel`);
    expect(again.status).toBe(409);
    expect(errorOf(again)).toMatchObject({ code: 'conflict', details: { status: 'canceled' } });
    expect((await report(B, command.commandId, 'executed')).body).toMatchObject({ applied: false });
    expect((await system.device(B).post(`/api/v1/commands/${command.commandId}/cancel`)).status).toBe(403);
  });

  it('lists commands by device and status in stable pages', async () => {
    for (let i = 0; i < 5; i += 1) await send(B, `job.${i}`);
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const query: string = after === null ? '' : `&after=${after}`;
      const page = (await operator.get(`/api/v1/commands?deviceId=${B}&status=pending&limit=2${query}`))
        .body as Page<Command>;
      expect(page.items.every((item) => item.deviceId === B && item.status === 'pending')).toBe(true);
      seen.push(...page.items.map((item) => item.type));
      after = page.next;
    } while (after !== null);
    expect(seen).toEqual(['job.4', 'job.3', 'job.2', 'job.1', 'job.0']);
    expect((await operator.get('/api/v1/commands?status=nonsense')).status).toBe(400);
  });
});

describe('config', () => {
  const path = `/api/v1/devices/${A}/config/agent.syncIntervalMs`;

  it('sets a key with increasing versions, refuses a stale expected version with 409, and shows desired vs reported', async () => {
    const first = await operator.put(path, { value: 5000 });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ key: 'agent.syncIntervalMs', value: 5000, version: 1, reportedVersion: null });
    const second = await operator.put(path, { value: 6000, expectedVersion: 1 });
    expect(second.body).toMatchObject({ value: 6000, version: 2 });
    const stale = await operator.put(path, { value: 7000, expectedVersion: 1 });
    expect(stale.status).toBe(409);
    expect(errorOf(stale).code).toBe('conflict');
    expect((await operator.get(path)).body).toMatchObject({ value: 6000, version: 2 });
    const listed = await system.device(A).get(`/api/v1/devices/${A}/config`);
    expect((listed.body as { items: unknown[] }).items).toEqual([
      expect.objectContaining({ key: 'agent.syncIntervalMs', version: 2 }),
    ]);
    const lagging = (await operator.get('/api/v1/config/lagging?key=agent.syncIntervalMs')).body as Page<{
      deviceId: string;
    }>;
    expect(lagging.items.map((item) => item.deviceId)).toContain(A);
  });

  it("refuses a value the agent's schema refuses, an unknown agent setting and a device writing config (422, 422, 403)", async () => {
    const tooFast = await operator.put(path, { value: 5 });
    expect(tooFast.status).toBe(422);
    expect(errorOf(tooFast).message).toMatch(/agent\.syncIntervalMs/);
    const unknown = await operator.put(`/api/v1/devices/${A}/config/agent.nope`, { value: 1 });
    expect(unknown.status).toBe(422);
    expect(errorOf(unknown).message).toContain("'agent.nope' is not an agent setting");
    expect((await system.device(A).put(path, { value: 5000 })).status).toBe(403);
    expect((await operator.put(`/api/v1/devices/${A}/config/reported`, { value: 1 })).status).toBe(400);
    expect((await operator.put(path, { expectedVersion: 2 })).status).toBe(400);
    expect((await operator.get(path)).body).toMatchObject({ value: 6000, version: 2 });
  });

  it('deletes a key (409 for a stale expected version), after which it is 404', async () => {
    const key = `/api/v1/devices/${B}/config/app.mode`;
    expect((await operator.put(key, { value: 'eco' })).body).toMatchObject({ version: 1 });
    const stale = await operator.delete(`${key}?expectedVersion=7`);
    expect(stale.status).toBe(409);
    const deleted = await operator.delete(`${key}?expectedVersion=1`);
    expect(deleted.status).toBe(200);
    const gone = await operator.get(key);
    expect(gone.status).toBe(404);
    expect((await operator.delete(`/api/v1/devices/${UNKNOWN}/config/app.mode`)).status).toBe(404);
  });
});
