/**
 * G6: the one error type of the downstream services (commands and config). The REST API
 * (bridge/api) maps it to its HTTP status as it stands; the MQTT side logs and counts it.
 *
 *   invalid           400  the input breaks the contract (schemas/): bad id, type, payload, key, value, cursor
 *   device-not-found  404  no such device in `devices`
 *   not-found         404  no such command / config key (for that device)
 *   conflict          409  too late (a command already executing or terminal) or a stale expected version
 */
export type DownstreamErrorCode = 'not-found' | 'device-not-found' | 'invalid' | 'conflict';

const HTTP_STATUS: Readonly<Record<DownstreamErrorCode, 400 | 404 | 409>> = {
  invalid: 400,
  'device-not-found': 404,
  'not-found': 404,
  conflict: 409,
};

export class DownstreamError extends Error {
  readonly code: DownstreamErrorCode;
  readonly httpStatus: 400 | 404 | 409;
  readonly details?: Record<string, unknown>;

  constructor(code: DownstreamErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DownstreamError';
    this.code = code;
    this.httpStatus = HTTP_STATUS[code];
    if (details !== undefined) this.details = details;
  }
}

export function isDownstreamError(error: unknown): error is DownstreamError {
  return error instanceof DownstreamError;
}
