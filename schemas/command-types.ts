/**
 * Command types the edge agent runs itself; every other type (matching COMMAND_TYPE_PATTERN) is
 * handed to local applications on the edge's local listener (local/commands/{type}, result back
 * on local/commands/{commandId}/result). One place for the REST API (which refuses a built-in
 * command with an invalid payload at creation) and the edge (which rejects it on arrival).
 *
 *   ping         {}                 result {pong: true, at}
 *   sync-now     {}                 result {sent}: readings sent at once instead of at the next interval
 *   set-setting  {key, value}       one agent setting (schemas/agent-settings.schema.json), live
 */
import { checkAgentSetting, checkBuiltInCommandPayload, type Validation } from './validators.js';
import { COMMAND_TYPE_PATTERN, MAX_COMMAND_PAYLOAD_BYTES } from './limits.js';

export const BUILT_IN_COMMAND_TYPES = ['ping', 'sync-now', 'set-setting'] as const;
export type BuiltInCommandType = (typeof BUILT_IN_COMMAND_TYPES)[number];

export function isBuiltInCommandType(type: string): type is BuiltInCommandType {
  return (BUILT_IN_COMMAND_TYPES as readonly string[]).includes(type);
}

/**
 * Whether a command of `type` with `payload` may be created (REST) or run (edge): the type's
 * pattern, the payload's size, and for a built-in type its payload schema (for set-setting also
 * the setting's own schema). The reason is one line for an HTTP 400 body or a `rejected` report.
 */
export function checkCommand(type: string, payload: unknown): Validation<Record<string, unknown>> {
  if (!COMMAND_TYPE_PATTERN.test(type)) {
    return { ok: false, reason: `command type '${type}' must match ${String(COMMAND_TYPE_PATTERN)}` };
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, reason: 'command payload must be a JSON object' };
  }
  const bytes = Buffer.byteLength(JSON.stringify(payload));
  if (bytes > MAX_COMMAND_PAYLOAD_BYTES) {
    return { ok: false, reason: `command payload is ${bytes} bytes, more than ${MAX_COMMAND_PAYLOAD_BYTES}` };
  }
  const body = payload as Record<string, unknown>;
  if (!isBuiltInCommandType(type)) return { ok: true, value: body };
  const shape = checkBuiltInCommandPayload(type, body);
  if (!shape.ok) return { ok: false, reason: `${type} payload: ${shape.reason}` };
  if (type === 'set-setting') {
    const setting = checkAgentSetting(String(body.key), body.value);
    if (!setting.ok) return { ok: false, reason: `set-setting: ${setting.reason}` };
  }
  return { ok: true, value: body };
}
