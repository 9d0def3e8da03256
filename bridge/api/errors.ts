/**
 * The standard error body of the REST API, `{error: {code, message, details?}}`
 * (schemas/http-api.ts ERROR_BODY_SCHEMA), for every 4xx and 5xx: the API's own refusals
 * (ApiError), the downstream services' (bridge/downstream/errors.ts DownstreamError, matched by
 * shape so this module does not depend on that branch's internals), and fastify's own errors,
 * which would otherwise answer with fastify's `{statusCode, error, message}` (fastify 5.12.8:
 * FST_ERR_CTP_INVALID_MEDIA_TYPE, FST_ERR_CTP_BODY_TOO_LARGE, FST_ERR_CTP_EMPTY_JSON_BODY,
 * FST_ERR_CTP_INVALID_CONTENT_LENGTH and validation errors carrying `validation`).
 * Pure: errorReply maps an error to status and body; ./server.ts logs, counts and sends it.
 *
 * Status rules: 400 the request is malformed (not JSON, fails its JSON Schema, bad cursor);
 * 401 no usable identity; 403 not allowed; 404 not found (also another device's command);
 * 409 conflict with the current state (stale expected version, a command too late to cancel);
 * 413 body over the limit; 415 not application/json; 422 well-formed but refused by the
 * contract (a command payload that does not match its type's schema, a config value that fails
 * the agent's schema); 503 shutting down or the database unreachable; 500 anything else.
 */
import type { ApiErrorBody } from '../../schemas/http-api.js';
import { CursorError } from './pagination.js';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export interface ErrorReply {
  status: number;
  body: ApiErrorBody;
}

interface FastifyLikeError {
  name?: unknown;
  code?: unknown;
  statusCode?: unknown;
  message?: unknown;
  validation?: unknown;
  validationContext?: unknown;
  httpStatus?: unknown;
  details?: unknown;
}

const FASTIFY_CODES: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported-media-type' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body-too-large' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid-json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid-request' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid-json' },
};

const DOWNSTREAM_CODES = new Set(['not-found', 'device-not-found', 'invalid', 'conflict']);

export function errorReply(error: unknown, bodyLimit: number): ErrorReply {
  if (error instanceof ApiError) return reply(error.status, error.code, error.message, error.details);
  if (error instanceof CursorError) return reply(400, 'invalid-cursor', error.message);
  const e = (typeof error === 'object' && error !== null ? error : {}) as FastifyLikeError;
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (
    e.name === 'DownstreamError' ||
    (typeof e.code === 'string' && DOWNSTREAM_CODES.has(e.code) && typeof e.httpStatus === 'number')
  ) {
    const status = typeof e.httpStatus === 'number' ? e.httpStatus : 400;
    return reply(status, String(e.code), message, e.details);
  }
  if (Array.isArray(e.validation)) {
    const where = typeof e.validationContext === 'string' ? e.validationContext : 'request';
    return reply(400, 'invalid-request', `invalid ${where}: ${message}`, e.validation);
  }
  const known = typeof e.code === 'string' ? FASTIFY_CODES[e.code] : undefined;
  if (known !== undefined) {
    const text = known.status === 413 ? `the request body is larger than ${bodyLimit} bytes` : message;
    return reply(known.status, known.code, text);
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return reply(e.statusCode, 'invalid-request', message);
  }
  return reply(500, 'internal', 'internal error; the request was logged');
}

function reply(status: number, code: string, message: string, details?: unknown): ErrorReply {
  return { status, body: { error: details === undefined ? { code, message } : { code, message, details } } };
}
