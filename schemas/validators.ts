/**
 * Compiled ajv validators for every JSON payload of the contract.
 * Each returns either the typed value or a one-line, human-readable reason.
 */
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import { MAX_STATUS_FUTURE_SKEW_MS } from './limits.js';
import type {
  AgentSettings,
  CommandMessage,
  CommandReport,
  ConfigDesired,
  ConfigReported,
  DeviceStatus,
  LocalCommandResult,
  RevocationList,
  SensorReadingInput,
  SyncAck,
  TelemetryBatch,
  TelemetryRecord,
} from './messages.js';

const require = createRequire(import.meta.url);
const addFormats = addFormatsPlugin as unknown as (ajv: Ajv) => Ajv;

const ajv = new Ajv({ allErrors: false, strict: true });
addFormats(ajv);

function compile<T>(schemaFile: string): ValidateFunction<T> {
  return ajv.compile<T>(require(`./${schemaFile}`) as object);
}

const validateSensorReading = compile<SensorReadingInput>('sensor-reading.schema.json');
const validateTelemetryRecord = compile<TelemetryRecord>('telemetry-record.schema.json');
const validateTelemetryBatchEnvelope = compile<TelemetryBatch>('telemetry-batch.schema.json');
const validateSyncAck = compile<SyncAck>('sync-ack.schema.json');
const validateDeviceStatus = compile<DeviceStatus>('device-status.schema.json');
const validateRevocationList = compile<RevocationList>('revocation-list.schema.json');
const validateCommandMessage = compile<CommandMessage>('command.schema.json');
const validateCommandReport = compile<CommandReport>('command-result.schema.json');
const validateConfigDesired = compile<ConfigDesired>('config-desired.schema.json');
const validateConfigReported = compile<ConfigReported>('config-reported.schema.json');
const validateAgentSettings = compile<AgentSettings>('agent-settings.schema.json');
const validateLocalCommandResult = compile<LocalCommandResult>('local-command-result.schema.json');
ajv.addSchema(require('./command-payloads.schema.json') as object);
const commandPayloadValidators = new Map<string, ValidateFunction>(
  ['ping', 'sync-now', 'set-setting'].map((type) => [
    type,
    ajv.getSchema(`https://mqtt-edge-sync.dev/schemas/command-payloads.schema.json#/$defs/${type}`) as ValidateFunction,
  ]),
);

export type Validation<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Turns ajv's first error into e.g. "/value must be number". */
export function describeAjvErrors(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0];
  if (!first) return 'invalid';
  const where = first.instancePath === '' ? '(root)' : first.instancePath;
  const extra =
    first.keyword === 'additionalProperties'
      ? ` '${String((first.params as { additionalProperty?: string }).additionalProperty)}'`
      : '';
  return `${where} ${first.message ?? 'is invalid'}${extra}`;
}

function run<T>(validate: ValidateFunction<T>, value: unknown): Validation<T> {
  if (validate(value)) return { ok: true, value };
  return { ok: false, reason: describeAjvErrors(validate.errors) };
}

/** Parses UTF-8 JSON; a clear reason instead of a thrown SyntaxError. */
export function parseJson(payload: Buffer | string): Validation<unknown> {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, reason: `payload is not valid JSON: ${(error as Error).message}` };
  }
}

/** A sensor payload: an object matching sensor-reading.schema.json, or a bare finite number. */
export function checkSensorReading(value: unknown): Validation<SensorReadingInput> {
  if (typeof value === 'number') {
    return Number.isFinite(value)
      ? { ok: true, value: { value } }
      : { ok: false, reason: 'value must be a finite number' };
  }
  const result = run(validateSensorReading, value);
  if (result.ok && !Number.isFinite(result.value.value)) return { ok: false, reason: 'value must be a finite number' };
  return result;
}

export function checkTelemetryRecord(value: unknown): Validation<TelemetryRecord> {
  return run(validateTelemetryRecord, value);
}

/** Checks the envelope only; records are checked one by one with checkTelemetryRecord. */
export function checkTelemetryBatchEnvelope(value: unknown): Validation<TelemetryBatch> {
  return run(validateTelemetryBatchEnvelope, value);
}

export function checkSyncAck(value: unknown): Validation<SyncAck> {
  return run(validateSyncAck, value);
}

export function checkDeviceStatus(value: unknown): Validation<DeviceStatus> {
  return run(validateDeviceStatus, value);
}

/**
 * A devices/{id}/status payload as the broker receives it (published or as a will): UTF-8 JSON
 * matching device-status.schema.json, with an `at` no more than MAX_STATUS_FUTURE_SKEW_MS ahead
 * of `nowMs` (the broker's clock).
 */
export function checkDeviceStatusPayload(payload: Buffer | string, nowMs: number): Validation<DeviceStatus> {
  const parsed = parseJson(payload);
  if (!parsed.ok) return parsed;
  const status = checkDeviceStatus(parsed.value);
  if (!status.ok) return status;
  const at = Date.parse(status.value.at);
  if (at > nowMs + MAX_STATUS_FUTURE_SKEW_MS) {
    return {
      ok: false,
      reason:
        `/at ${status.value.at} is more than ${MAX_STATUS_FUTURE_SKEW_MS / 60_000} minutes ahead of the broker's clock ` +
        `(${new Date(nowMs).toISOString()})`,
    };
  }
  return status;
}

/** A control/revocations payload: UTF-8 JSON matching revocation-list.schema.json. */
export function checkRevocationListPayload(payload: Buffer | string): Validation<RevocationList> {
  const parsed = parseJson(payload);
  if (!parsed.ok) return parsed;
  return run(validateRevocationList, parsed.value);
}

/** Parses JSON text, then checks it with `check`; one reason for either failure. */
function parseAndCheck<T>(payload: Buffer | string, check: (value: unknown) => Validation<T>): Validation<T> {
  const parsed = parseJson(payload);
  return parsed.ok ? check(parsed.value) : parsed;
}

/** A devices/{id}/commands/{cid} payload (non-empty; an empty one clears the topic). */
export function checkCommandMessagePayload(payload: Buffer | string): Validation<CommandMessage> {
  return parseAndCheck(payload, (value) => run(validateCommandMessage, value));
}

/** A devices/{id}/commands/{cid}/result payload. Size is checked by the caller (MAX_COMMAND_RESULT_BYTES). */
export function checkCommandReportPayload(payload: Buffer | string): Validation<CommandReport> {
  return parseAndCheck(payload, (value) => run(validateCommandReport, value));
}

/** A devices/{id}/config/{key} payload (non-empty; an empty one means the key was deleted). */
export function checkConfigDesiredPayload(payload: Buffer | string): Validation<ConfigDesired> {
  return parseAndCheck(payload, (value) => run(validateConfigDesired, value));
}

/** A devices/{id}/config/reported payload. */
export function checkConfigReportedPayload(payload: Buffer | string): Validation<ConfigReported> {
  return parseAndCheck(payload, (value) => run(validateConfigReported, value));
}

/** A local/commands/{commandId}/result payload from a local application (edge's local listener). */
export function checkLocalCommandResultPayload(payload: Buffer | string): Validation<LocalCommandResult> {
  return parseAndCheck(payload, (value) => run(validateLocalCommandResult, value));
}

/** Whether `key` is an agent setting (agent.*) known to schemas/agent-settings.schema.json. */
export function isAgentSettingKey(key: string): key is keyof AgentSettings {
  return key in (require('./agent-settings.schema.json') as { properties: object }).properties;
}

/** One agent setting's value against its schema; an unknown agent.* key is refused by name. */
export function checkAgentSetting(key: string, value: unknown): Validation<unknown> {
  if (!isAgentSettingKey(key)) return { ok: false, reason: `'${key}' is not an agent setting` };
  const result = run(validateAgentSettings, { [key]: value });
  return result.ok ? { ok: true, value } : result;
}

/** The payload of a built-in command type (schemas/command-payloads.schema.json). */
export function checkBuiltInCommandPayload(type: string, payload: unknown): Validation<unknown> {
  const validate = commandPayloadValidators.get(type);
  if (!validate) return { ok: false, reason: `'${type}' is not a built-in command type` };
  return run(validate, payload);
}
