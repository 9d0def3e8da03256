/**
 * The REST API's routes: each declares its schemas (schemas/http-api.ts and the contract's own
 * *.schema.json; the OpenAPI document is generated from them), asks ./authorization.ts, and calls
 * the queries (./queries.ts), the ingest pipeline (./http-ingest.ts) or the command and config
 * services (./downstream-port.ts). Thin on purpose: the decisions live in the pure modules.
 *
 * Device endpoints (the seed's Sync API): POST /api/v1/sync/telemetry, GET /api/v1/sync/commands/:deviceId,
 * POST /api/v1/sync/ack/:commandId, GET /api/v1/sync/status/:deviceId, POST /api/v1/devices/register.
 * Operator endpoints: devices, commands, config, telemetry queries, conflicts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CommandStatus } from '../../schemas/command-lifecycle.js';
import { checkCommand } from '../../schemas/command-types.js';
import {
  COMMAND_ID_PARAMS,
  COMMAND_LIST_QUERY,
  COMMAND_VIEW_SCHEMA,
  CONFIG_KEY_PARAMS,
  CONFIG_LAGGING_QUERY,
  CONFIG_VIEW_SCHEMA,
  CONFLICT_QUERY,
  CONFLICT_SCHEMA,
  CREATE_COMMAND_BODY,
  DEVICE_ID_PARAMS,
  DEVICE_VIEW_SCHEMA,
  ERROR_BODY_SCHEMA,
  EXPECTED_VERSION_QUERY,
  httpSchema,
  OPEN_OBJECT,
  PAGE_QUERY_PROPERTIES,
  pageOf,
  REGISTER_DEVICE_BODY,
  SET_CONFIG_BODY,
  SYNC_STATUS_SCHEMA,
  TELEMETRY_QUERY,
  TELEMETRY_ROW_SCHEMA,
  type JsonSchema,
} from '../../schemas/http-api.js';
import { MAX_COMMAND_RESULT_BYTES, MAX_CONFIG_VALUE_BYTES } from '../../schemas/limits.js';
import type { CommandReport } from '../../schemas/messages.js';
import { checkAgentSetting, isAgentSettingKey } from '../../schemas/validators.js';
import type { Database } from '../db/connection.js';
import {
  deviceOnly,
  mayAccessDevice,
  mayAccessOwnedResource,
  operatorOnly,
  type AccessDecision,
} from './authorization.js';
import type { DownstreamPort } from './downstream-port.js';
import { ApiError } from './errors.js';
import { ingestOverHttp, type TelemetryIngest } from './http-ingest.js';
import type { ApiIdentity } from './identity.js';
import { deviceSyncStatus, getDevice, listConflicts, listDevices, queryTelemetry, registerDevice } from './queries.js';
import { rawBodyOf } from './raw-body.js';

export interface RouteDependencies {
  db: Database;
  ingest: TelemetryIngest;
  downstream: DownstreamPort | null;
  bodyLimit: number;
  ingestTimeoutMs: number;
}

const ERRORS = { '4xx': ERROR_BODY_SCHEMA, '5xx': ERROR_BODY_SCHEMA };
const PAGE_QUERY = { type: 'object', additionalProperties: false, properties: PAGE_QUERY_PROPERTIES } as const;

function responses(ok: Record<number, JsonSchema | object>): Record<string, unknown> {
  return { ...ok, ...ERRORS };
}

function enforce(decision: AccessDecision): void {
  if (!decision.ok) throw new ApiError(decision.status, decision.code, decision.reason);
}

function identityOf(request: FastifyRequest): ApiIdentity {
  if (request.identity === null) throw new ApiError(401, 'unauthenticated', 'no identity'); // the auth hook ran first
  return request.identity;
}

export function registerApiRoutes(app: FastifyInstance, deps: RouteDependencies): void {
  const { db } = deps;
  const downstream = (): DownstreamPort => {
    if (deps.downstream === null) {
      throw new ApiError(
        503,
        'unavailable',
        'commands and config are not served by this bridge (no downstream service)',
      );
    }
    return deps.downstream;
  };

  // ---- device endpoints (the seed's Sync API) -------------------------------------------------

  app.post(
    '/api/v1/sync/telemetry',
    {
      schema: {
        summary: 'HTTP fallback for devices without an MQTT session: the same ingest and ack as devices/{id}/telemetry',
        tags: ['device'],
        body: httpSchema('telemetry-batch.schema.json'),
        response: responses({ 200: httpSchema('sync-ack.schema.json') }),
      },
    },
    async (request) => {
      const identity = identityOf(request);
      enforce(deviceOnly(identity, 'posting telemetry'));
      // the raw bytes, so the pipeline parses exactly what MQTT would have carried
      return ingestOverHttp(deps.ingest, identity.id, rawBodyOf(request), deps.ingestTimeoutMs);
    },
  );

  app.get<{ Params: { deviceId: string } }>(
    '/api/v1/sync/commands/:deviceId',
    {
      schema: {
        summary: "A device's live commands (pending, delivered, executing)",
        tags: ['device'],
        params: DEVICE_ID_PARAMS,
        response: responses({
          200: {
            type: 'object',
            required: ['items'],
            properties: { items: { type: 'array', items: COMMAND_VIEW_SCHEMA } },
          },
        }),
      },
    },
    async (request) => {
      enforce(mayAccessDevice(identityOf(request), request.params.deviceId));
      return { items: await downstream().commands.liveForDevice(request.params.deviceId) };
    },
  );

  app.post<{ Params: { commandId: string }; Body: CommandReport }>(
    '/api/v1/sync/ack/:commandId',
    {
      schema: {
        summary: 'A device reports a command state (delivered … executed/failed), as on commands/{id}/result',
        tags: ['device'],
        params: COMMAND_ID_PARAMS,
        body: httpSchema('command-result.schema.json'),
        response: responses({
          200: {
            type: 'object',
            required: ['applied', 'command'],
            properties: { applied: { type: 'boolean' }, command: COMMAND_VIEW_SCHEMA },
          },
        }),
      },
    },
    async (request) => {
      const identity = identityOf(request);
      enforce(deviceOnly(identity, 'reporting a command result'));
      const bytes = rawBodyOf(request).length;
      if (bytes > MAX_COMMAND_RESULT_BYTES) {
        throw new ApiError(
          413,
          'body-too-large',
          `a command report is at most ${MAX_COMMAND_RESULT_BYTES} bytes, got ${bytes}`,
        );
      }
      // the service answers not-found for a command of another device too (ids do not leak)
      return downstream().commands.report(identity.id, request.params.commandId, request.body);
    },
  );

  app.get<{ Params: { deviceId: string } }>(
    '/api/v1/sync/status/:deviceId',
    {
      schema: {
        summary: "A device's sync status: its last batch, pending commands and presence (getDeviceSyncStatus)",
        tags: ['device'],
        params: DEVICE_ID_PARAMS,
        response: responses({ 200: SYNC_STATUS_SCHEMA }),
      },
    },
    async (request) => {
      enforce(mayAccessDevice(identityOf(request), request.params.deviceId));
      const status = await deviceSyncStatus(db, request.params.deviceId);
      if (status === null)
        throw new ApiError(404, 'device-not-found', `device '${request.params.deviceId}' is not registered`);
      return status;
    },
  );

  app.post<{
    Body: { deviceId?: string; name: string; type: string; location?: string; metadata?: Record<string, unknown> };
  }>(
    '/api/v1/devices/register',
    {
      schema: {
        summary: 'Creates (201) or updates (200) the devices row; a device registers itself, an operator any device',
        tags: ['device'],
        body: REGISTER_DEVICE_BODY,
        response: responses({ 200: DEVICE_VIEW_SCHEMA, 201: DEVICE_VIEW_SCHEMA }),
      },
    },
    async (request, reply) => {
      const identity = identityOf(request);
      const { deviceId: given, ...rest } = request.body;
      let deviceId: string;
      if (identity.kind === 'device') {
        if (given !== undefined) enforce(mayAccessDevice(identity, given));
        deviceId = identity.id;
      } else {
        if (given === undefined)
          throw new ApiError(400, 'invalid-request', 'an operator must name the deviceId to register');
        deviceId = given;
      }
      const { created, device } = await registerDevice(db, { deviceId, ...rest });
      return reply.status(created ? 201 : 200).send(device);
    },
  );

  // ---- operator endpoints ---------------------------------------------------------------------

  app.get<{ Querystring: { limit: number; after?: string } }>(
    '/api/v1/devices',
    {
      schema: {
        summary: 'Devices with their sync status and presence, by device id',
        tags: ['operator'],
        querystring: PAGE_QUERY,
        response: responses({ 200: pageOf(DEVICE_VIEW_SCHEMA) }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'listing devices'));
      return listDevices(db, request.query);
    },
  );

  app.get<{ Params: { deviceId: string } }>(
    '/api/v1/devices/:deviceId',
    {
      schema: {
        summary: 'One device with its sync status and presence',
        tags: ['operator'],
        params: DEVICE_ID_PARAMS,
        response: responses({ 200: DEVICE_VIEW_SCHEMA }),
      },
    },
    async (request) => {
      enforce(mayAccessDevice(identityOf(request), request.params.deviceId));
      const device = await getDevice(db, request.params.deviceId);
      if (device === null)
        throw new ApiError(404, 'device-not-found', `device '${request.params.deviceId}' is not registered`);
      return device;
    },
  );

  app.get<{
    Params: { deviceId: string };
    Querystring: { sensor?: string; from?: string; to?: string; limit: number; after?: string };
  }>(
    '/api/v1/devices/:deviceId/telemetry',
    {
      schema: {
        summary: "A device's readings, newest first, by sensor and time range [from, to) (idx_device_time)",
        tags: ['operator'],
        params: DEVICE_ID_PARAMS,
        querystring: TELEMETRY_QUERY,
        response: responses({ 200: pageOf(TELEMETRY_ROW_SCHEMA) }),
      },
    },
    async (request) => {
      enforce(mayAccessDevice(identityOf(request), request.params.deviceId));
      const { from, to } = request.query;
      if (from !== undefined && to !== undefined && Date.parse(from) >= Date.parse(to)) {
        throw new ApiError(400, 'invalid-request', `'from' (${from}) must be before 'to' (${to})`);
      }
      return queryTelemetry(db, { deviceId: request.params.deviceId, ...request.query });
    },
  );

  app.get<{ Querystring: { deviceId?: string; limit: number; after?: string } }>(
    '/api/v1/conflicts',
    {
      schema: {
        summary: 'conflict_log entries, newest first, optionally of one device',
        tags: ['operator'],
        querystring: CONFLICT_QUERY,
        response: responses({ 200: pageOf(CONFLICT_SCHEMA) }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'listing conflicts'));
      return listConflicts(db, request.query);
    },
  );

  app.post<{ Body: { deviceId: string; type: string; payload: Record<string, unknown>; expiresAt?: string } }>(
    '/api/v1/commands',
    {
      schema: {
        summary: 'Creates a command (published retained to the device after commit)',
        tags: ['operator'],
        body: CREATE_COMMAND_BODY,
        response: responses({ 201: COMMAND_VIEW_SCHEMA }),
      },
    },
    async (request, reply) => {
      enforce(operatorOnly(identityOf(request), 'creating commands'));
      const { deviceId, type, payload, expiresAt } = request.body;
      const checked = checkCommand(type, payload);
      if (!checked.ok) throw new ApiError(422, 'invalid-command', checked.reason);
      if (expiresAt !== undefined && Date.parse(expiresAt) <= Date.now()) {
        throw new ApiError(422, 'invalid-command', `expiresAt ${expiresAt} is not in the future`);
      }
      const command = await downstream().commands.create({
        deviceId,
        type,
        payload: checked.value,
        ...(expiresAt === undefined ? {} : { expiresAt }),
      });
      return reply.status(201).send(command);
    },
  );

  app.get<{ Querystring: { deviceId?: string; status?: CommandStatus; type?: string; limit: number; after?: string } }>(
    '/api/v1/commands',
    {
      schema: {
        summary: 'Commands, filtered by device, status and type',
        tags: ['operator'],
        querystring: COMMAND_LIST_QUERY,
        response: responses({ 200: pageOf(COMMAND_VIEW_SCHEMA) }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'listing commands'));
      return downstream().commands.list(request.query);
    },
  );

  app.get<{ Params: { commandId: string } }>(
    '/api/v1/commands/:commandId',
    {
      schema: {
        summary: 'One command with its status and result',
        tags: ['operator'],
        params: COMMAND_ID_PARAMS,
        response: responses({ 200: COMMAND_VIEW_SCHEMA }),
      },
    },
    async (request) => {
      const command = await downstream().commands.get(request.params.commandId);
      enforce(
        mayAccessOwnedResource(identityOf(request), command?.deviceId ?? null, `command '${request.params.commandId}'`),
      );
      return command;
    },
  );

  app.post<{ Params: { commandId: string } }>(
    '/api/v1/commands/:commandId/cancel',
    {
      schema: {
        summary: 'Cancels a command that has not started (409 with its status when too late)',
        tags: ['operator'],
        params: COMMAND_ID_PARAMS,
        response: responses({ 200: COMMAND_VIEW_SCHEMA }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'canceling commands'));
      return downstream().commands.cancel(request.params.commandId);
    },
  );

  app.get<{ Params: { deviceId: string } }>(
    '/api/v1/devices/:deviceId/config',
    {
      schema: {
        summary: "A device's config keys: desired value and version next to the reported version and status",
        tags: ['operator'],
        params: DEVICE_ID_PARAMS,
        response: responses({
          200: {
            type: 'object',
            required: ['items'],
            properties: { items: { type: 'array', items: CONFIG_VIEW_SCHEMA } },
          },
        }),
      },
    },
    async (request) => {
      enforce(mayAccessDevice(identityOf(request), request.params.deviceId));
      return { items: await downstream().config.list(request.params.deviceId) };
    },
  );

  app.get<{ Params: { deviceId: string; key: string } }>(
    '/api/v1/devices/:deviceId/config/:key',
    {
      schema: {
        summary: 'One config key: desired vs reported',
        tags: ['operator'],
        params: CONFIG_KEY_PARAMS,
        response: responses({ 200: CONFIG_VIEW_SCHEMA }),
      },
    },
    async (request) => {
      const { deviceId, key } = request.params;
      enforce(mayAccessDevice(identityOf(request), deviceId));
      const entry = await downstream().config.get(deviceId, key);
      if (entry === null) throw new ApiError(404, 'not-found', `device '${deviceId}' has no config key '${key}'`);
      return entry;
    },
  );

  app.put<{ Params: { deviceId: string; key: string }; Body: { value: unknown; expectedVersion?: number } }>(
    '/api/v1/devices/:deviceId/config/:key',
    {
      schema: {
        summary: 'Sets a config key (version + 1); expectedVersion makes a stale write fail with 409',
        tags: ['operator'],
        params: CONFIG_KEY_PARAMS,
        body: SET_CONFIG_BODY,
        response: responses({ 200: CONFIG_VIEW_SCHEMA }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'setting config'));
      const { deviceId, key } = request.params;
      const { value, expectedVersion } = request.body;
      const bytes = Buffer.byteLength(JSON.stringify(value));
      if (bytes > MAX_CONFIG_VALUE_BYTES) {
        throw new ApiError(
          422,
          'invalid-config',
          `a config value is at most ${MAX_CONFIG_VALUE_BYTES} bytes of JSON, got ${bytes}`,
        );
      }
      if (key.startsWith('agent.') || isAgentSettingKey(key)) {
        const setting = checkAgentSetting(key, value);
        if (!setting.ok) throw new ApiError(422, 'invalid-config', `the agent would reject ${key}: ${setting.reason}`);
      }
      return downstream().config.set(deviceId, key, value, expectedVersion === undefined ? {} : { expectedVersion });
    },
  );

  app.delete<{ Params: { deviceId: string; key: string }; Querystring: { expectedVersion?: number } }>(
    '/api/v1/devices/:deviceId/config/:key',
    {
      schema: {
        summary:
          'Deletes a config key (clears its retained topic); ?expectedVersion= makes a stale delete fail with 409',
        tags: ['operator'],
        params: CONFIG_KEY_PARAMS,
        querystring: EXPECTED_VERSION_QUERY,
        response: responses({ 200: OPEN_OBJECT }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'deleting config'));
      const { deviceId, key } = request.params;
      const { expectedVersion } = request.query;
      await downstream().config.delete(deviceId, key, expectedVersion === undefined ? {} : { expectedVersion });
      return { deleted: true, deviceId, key };
    },
  );

  app.get<{ Querystring: { key?: string; limit: number; after?: string } }>(
    '/api/v1/config/lagging',
    {
      schema: {
        summary: 'Config entries whose desired version the device has not applied yet',
        tags: ['operator'],
        querystring: CONFIG_LAGGING_QUERY,
        response: responses({ 200: pageOf(OPEN_OBJECT) }),
      },
    },
    async (request) => {
      enforce(operatorOnly(identityOf(request), 'listing lagging config'));
      return downstream().config.lagging(request.query);
    },
  );
}
