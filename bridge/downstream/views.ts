/**
 * G6: what the downstream services return (the REST API serialises these as they are) and how a
 * database row becomes one. Timestamps are ISO 8601 strings or null; ids lower-case UUIDs.
 */
import type { CommandStatus } from '../../schemas/command-lifecycle.js';

export interface CommandView {
  commandId: string;
  deviceId: string;
  type: string;
  payload: Record<string, unknown>;
  status: CommandStatus;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  deliveredAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  canceledAt: string | null;
  result: unknown;
  error: string | null;
}

export interface ConfigView {
  deviceId: string;
  key: string;
  value: unknown;
  version: number;
  updatedAt: string;
  reportedVersion: number | null;
  reportedStatus: 'applied' | 'rejected' | null;
  reportedError: string | null;
  reportedAt: string | null;
}

/** A device_configs row as the services read it: the view plus the tombstone. */
export interface ConfigState extends ConfigView {
  /** the key was deleted: its topic is cleared; `version` is the last one it had */
  deleted: boolean;
}

export const COMMAND_COLUMNS =
  'command_id, device_id, command_type, payload, status, created_at, updated_at, expires_at, delivered_at, ' +
  'started_at, finished_at, canceled_at, result, error';

export const CONFIG_COLUMNS =
  'device_id, config_key, config_value, version, updated_at, deleted_at, reported_version, reported_status, ' +
  'reported_error, reported_at';

export interface CommandRow {
  command_id: string;
  device_id: string;
  command_type: string;
  payload: Record<string, unknown>;
  status: string;
  created_at: Date;
  updated_at: Date;
  expires_at: Date | null;
  delivered_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  canceled_at: Date | null;
  result: unknown;
  error: string | null;
}

export interface ConfigRow {
  device_id: string;
  config_key: string;
  config_value: unknown;
  /** BIGINT: node-postgres returns a string */
  version: string | number;
  updated_at: Date;
  deleted_at: Date | null;
  reported_version: string | number | null;
  reported_status: string | null;
  reported_error: string | null;
  reported_at: Date | null;
}

const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString());

export function commandView(row: CommandRow): CommandView {
  return {
    commandId: row.command_id,
    deviceId: row.device_id,
    type: row.command_type,
    payload: row.payload,
    status: row.status as CommandStatus,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    expiresAt: iso(row.expires_at),
    deliveredAt: iso(row.delivered_at),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    canceledAt: iso(row.canceled_at),
    result: row.result ?? null,
    error: row.error,
  };
}

export function configState(row: ConfigRow): ConfigState {
  return {
    deviceId: row.device_id,
    key: row.config_key,
    value: row.config_value,
    version: Number(row.version),
    updatedAt: row.updated_at.toISOString(),
    reportedVersion: row.reported_version === null ? null : Number(row.reported_version),
    reportedStatus:
      row.reported_status === 'applied' || row.reported_status === 'rejected' ? row.reported_status : null,
    reportedError: row.reported_error,
    reportedAt: iso(row.reported_at),
    deleted: row.deleted_at !== null,
  };
}

export function configView(state: ConfigState): ConfigView {
  const { deleted: _deleted, ...view } = state;
  return view;
}
