/**
 * The REST API's JSON Schemas (bridge/api/, served at /api/v1, documented at
 * /api/v1/openapi.json). One source with MQTT: every payload that also travels over MQTT (a
 * telemetry batch, a sync ack, a command report, a command) is the contract's own
 * *.schema.json, loaded here and only stripped of its `$id` (httpSchema), so HTTP validates
 * exactly what the broker and bridge validate; the HTTP-only shapes (error body, pages, devices,
 * status, queries) are defined here, next to them. Limits come from ./limits.ts.
 */
import { createRequire } from 'node:module';
import { COMMAND_STATUSES } from './command-lifecycle.js';
import { COMMAND_TYPE_PATTERN, CONFIG_KEY_PATTERN, DEVICE_ID_PATTERN, TOPIC_ID_PATTERN } from './limits.js';

const require = createRequire(import.meta.url);

export type JsonSchema = Record<string, unknown>;

/**
 * A contract schema for use inside an HTTP route schema: a deep copy without `$id`, so one ajv
 * instance (and the OpenAPI document) can hold it under many routes.
 */
export function httpSchema(file: string): JsonSchema {
  const copy = structuredClone(require(`./${file}`) as JsonSchema);
  delete copy['$id'];
  return copy;
}

/** Largest HTTP request body (bytes): a telemetry batch as large as MQTT takes (MAX_PAYLOAD_BYTES). */
export { MAX_PAYLOAD_BYTES as MAX_HTTP_BODY_BYTES } from './limits.js';

const pattern = (regex: RegExp): string => regex.source;

export const DEVICE_ID_SCHEMA = { type: 'string', pattern: pattern(DEVICE_ID_PATTERN) } as const;
export const UUID_SCHEMA = { type: 'string', format: 'uuid' } as const;
const DATE_TIME = { type: 'string', format: 'date-time' } as const;
const NULLABLE_DATE_TIME = { type: ['string', 'null'], format: 'date-time' } as const;

/** The error body of every 4xx/5xx: `{error: {code, message, details?}}`. */
export const ERROR_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'machine-readable, e.g. invalid-request, not-found, conflict' },
        message: { type: 'string', description: 'one line for people: what is wrong and how to fix it' },
        details: { description: 'more, e.g. the validation failures or the current status of a command' },
      },
    },
  },
} as const;

export interface ApiErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export const MAX_PAGE_LIMIT = 1000;
export const DEFAULT_PAGE_LIMIT = 100;

/** ?limit=&after= on every list; `after` is the previous page's `next` (opaque). */
export const PAGE_QUERY_PROPERTIES = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT },
  after: { type: 'string', minLength: 1, maxLength: 512, description: 'the `next` of the previous page' },
} as const;

export function pageOf(item: JsonSchema): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['items', 'next'],
    properties: {
      items: { type: 'array', items: item },
      next: { type: ['string', 'null'], description: 'pass as ?after= for the next page; null on the last page' },
    },
  };
}

export const DEVICE_ID_PARAMS = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId'],
  properties: { deviceId: DEVICE_ID_SCHEMA },
} as const;

export const COMMAND_ID_PARAMS = {
  type: 'object',
  additionalProperties: false,
  required: ['commandId'],
  properties: { commandId: UUID_SCHEMA },
} as const;

export const CONFIG_KEY_PARAMS = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId', 'key'],
  properties: { deviceId: DEVICE_ID_SCHEMA, key: { type: 'string', pattern: pattern(CONFIG_KEY_PATTERN) } },
} as const;

/** The sync_status row of a device (null fields before its first batch). */
export const SYNC_SUMMARY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['lastSyncAt', 'lastSyncStatus', 'pendingRecordsCount', 'totalSyncedRecords', 'lastError'],
  properties: {
    lastSyncAt: NULLABLE_DATE_TIME,
    lastSyncStatus: { type: ['string', 'null'], description: 'success, partial or failed' },
    pendingRecordsCount: { type: 'integer', description: 'the pendingCount the edge last reported' },
    totalSyncedRecords: { type: 'integer' },
    droppedRecordsCount: { type: 'integer', description: 'G8: pending readings the edge dropped to make room' },
    lastError: { type: ['string', 'null'] },
  },
} as const;

/** Presence: the devices row (status, last_seen_at), kept by the bridge. */
const PRESENCE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['status', 'lastSeenAt'],
  properties: { status: { type: ['string', 'null'] }, lastSeenAt: NULLABLE_DATE_TIME },
} as const;

/** A device in lists: the devices row with its sync summary and presence. */
export const DEVICE_VIEW_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId', 'name', 'type', 'registeredAt', 'presence', 'sync'],
  properties: {
    deviceId: DEVICE_ID_SCHEMA,
    name: { type: 'string' },
    type: { type: 'string' },
    location: { type: ['string', 'null'] },
    registeredAt: NULLABLE_DATE_TIME,
    metadata: {},
    presence: PRESENCE_SCHEMA,
    sync: { anyOf: [{ type: 'null' }, SYNC_SUMMARY_SCHEMA] },
  },
} as const;

/** GET /api/v1/sync/status/:deviceId (the seed's getDeviceSyncStatus). */
export const SYNC_STATUS_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId', 'lastSyncAt', 'lastSyncStatus', 'pendingRecordsCount', 'totalSyncedRecords', 'lastError'],
  properties: {
    deviceId: DEVICE_ID_SCHEMA,
    ...SYNC_SUMMARY_SCHEMA.properties,
    pendingCommands: { type: 'integer', description: 'live commands (pending, delivered, executing)' },
    presence: PRESENCE_SCHEMA,
  },
} as const;

/** POST /api/v1/devices/register (enrollment by CSR comes later). */
export const REGISTER_DEVICE_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type'],
  properties: {
    deviceId: { ...DEVICE_ID_SCHEMA, description: "a device registers itself: omitted or its certificate's CN" },
    name: { type: 'string', minLength: 1, maxLength: 200 },
    type: { type: 'string', minLength: 1, maxLength: 100 },
    location: { type: 'string', maxLength: 200 },
    metadata: { type: 'object' },
  },
} as const;

/** GET /api/v1/devices/:deviceId/telemetry: by sensor and time range, newest first (idx_device_time). */
export const TELEMETRY_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    sensor: { type: 'string', pattern: pattern(TOPIC_ID_PATTERN) },
    from: { ...DATE_TIME, description: 'inclusive' },
    to: { ...DATE_TIME, description: 'exclusive' },
    ...PAGE_QUERY_PROPERTIES,
  },
} as const;

export const TELEMETRY_ROW_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'sensorId', 'dataType', 'timestamp', 'value', 'version', 'syncedAt'],
  properties: {
    id: UUID_SCHEMA,
    sensorId: { type: 'string' },
    dataType: { type: 'string' },
    timestamp: DATE_TIME,
    value: { type: 'number' },
    unit: { type: ['string', 'null'] },
    metadata: {},
    version: { type: 'integer' },
    syncedAt: DATE_TIME,
  },
} as const;

export const CONFLICT_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { deviceId: DEVICE_ID_SCHEMA, ...PAGE_QUERY_PROPERTIES },
} as const;

export const CONFLICT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['conflictId', 'deviceId', 'recordId', 'conflictType', 'detectedAt'],
  properties: {
    conflictId: UUID_SCHEMA,
    deviceId: DEVICE_ID_SCHEMA,
    recordId: { type: 'string' },
    conflictType: { type: 'string' },
    localValue: {},
    remoteValue: {},
    resolvedValue: {},
    resolutionStrategy: { type: ['string', 'null'] },
    detectedAt: DATE_TIME,
  },
} as const;

/** POST /api/v1/commands. The payload is checked per type by schemas/command-types.ts checkCommand. */
export const CREATE_COMMAND_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['deviceId', 'type'],
  properties: {
    deviceId: DEVICE_ID_SCHEMA,
    type: { type: 'string', pattern: pattern(COMMAND_TYPE_PATTERN) },
    payload: { type: 'object', default: {} },
    expiresAt: DATE_TIME,
  },
} as const;

export const COMMAND_LIST_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    deviceId: DEVICE_ID_SCHEMA,
    status: { enum: [...COMMAND_STATUSES] },
    type: { type: 'string', pattern: pattern(COMMAND_TYPE_PATTERN) },
    ...PAGE_QUERY_PROPERTIES,
  },
} as const;

/** A command row as the command service returns it (open: the service owns its fields). */
export const COMMAND_VIEW_SCHEMA = {
  type: 'object',
  additionalProperties: true,
  required: ['commandId', 'deviceId', 'type', 'status'],
  properties: {
    commandId: UUID_SCHEMA,
    deviceId: DEVICE_ID_SCHEMA,
    type: { type: 'string' },
    payload: { type: 'object', additionalProperties: true },
    status: { enum: [...COMMAND_STATUSES] },
  },
} as const;

/** PUT /api/v1/devices/:deviceId/config/:key */
export const SET_CONFIG_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['value'],
  properties: {
    value: { description: 'any JSON; agent.* keys must match schemas/agent-settings.schema.json' },
    expectedVersion: {
      type: 'integer',
      minimum: 0,
      description: 'the version the write replaces (0: the key must not exist); else 409',
    },
  },
} as const;

export const EXPECTED_VERSION_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { expectedVersion: { type: 'integer', minimum: 0 } },
} as const;

export const CONFIG_LAGGING_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { key: { type: 'string', pattern: pattern(CONFIG_KEY_PATTERN) }, ...PAGE_QUERY_PROPERTIES },
} as const;

/** A config entry as the config service returns it: desired value and version next to what the device reported. */
export const CONFIG_VIEW_SCHEMA = {
  type: 'object',
  additionalProperties: true,
  required: ['key', 'version'],
  properties: {
    deviceId: DEVICE_ID_SCHEMA,
    key: { type: 'string' },
    value: {},
    version: { type: 'integer' },
  },
} as const;

export const OPEN_OBJECT = { type: 'object', additionalProperties: true } as const;
