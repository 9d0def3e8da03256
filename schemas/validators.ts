/**
 * Compiled ajv validators for every JSON payload of the contract.
 * Each returns either the typed value or a one-line, human-readable reason.
 */
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import { MAX_STATUS_FUTURE_SKEW_MS } from './limits.js';
import type {
  DeviceStatus,
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
