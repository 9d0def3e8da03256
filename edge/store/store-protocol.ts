/**
 * The messages between the edge agent's event loop and its store worker (pure). A request names
 * one TelemetryStore operation and its arguments (structured-cloned); the answer carries the
 * result or the error. Errors cross as plain data with their `code` (e.g. 'SQLITE_FULL',
 * 'SQLITE_BUSY' from @libsql/client 0.18's LibsqlError), because a structured clone of an Error
 * keeps only its name, message and stack, and the callers decide by the code.
 */
import type { DownstreamOperation } from './downstream-store.js';
import type { StoreOperation } from './telemetry-store.js';

export interface StoreRequest {
  id: number;
  operation: StoreOperation | DownstreamOperation | 'close';
  args: unknown[];
}

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  rawCode?: number;
}

export type StoreResponse =
  | { kind: 'ready' }
  | { kind: 'open-failed'; error: SerializedError }
  | { kind: 'result'; id: number; value: unknown }
  | { kind: 'error'; id: number; error: SerializedError };

export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const { code, rawCode } = error as { code?: unknown; rawCode?: unknown };
  return {
    name: error.name,
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof rawCode === 'number' ? { rawCode } : {}),
  };
}

/** An Error with the original name, message and code; the stack is this thread's. */
export function deserializeError(serialized: SerializedError): Error & { code?: string; rawCode?: number } {
  const error: Error & { code?: string; rawCode?: number } = new Error(serialized.message);
  error.name = serialized.name;
  if (serialized.code !== undefined) error.code = serialized.code;
  if (serialized.rawCode !== undefined) error.rawCode = serialized.rawCode;
  return error;
}
