/**
 * What the REST API needs of the command and config services (bridge/downstream/, G6): their
 * methods as the API calls them. The running bridge passes `bridge.downstream.commands` and
 * `bridge.downstream.config`; their failures are DownstreamError (code not-found,
 * device-not-found, invalid, conflict; httpStatus 400, 404 or 409), which ./errors.ts turns into
 * the standard error body. Typed structurally here so the API does not reach into the services'
 * internals; results are passed through as the services shape them.
 */
import type { CommandReport, ConfigReported } from '../../schemas/messages.js';

export interface CommandView {
  commandId: string;
  deviceId: string;
  type: string;
  status: string;
  [field: string]: unknown;
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export interface CommandsPort {
  create(input: {
    deviceId: string;
    type: string;
    payload: Record<string, unknown>;
    expiresAt?: Date;
  }): Promise<CommandView>;
  get(commandId: string): Promise<CommandView | null>;
  list(query: {
    deviceId?: string;
    status?: string;
    type?: string;
    limit: number;
    after?: string;
  }): Promise<Page<CommandView>>;
  liveForDevice(deviceId: string): Promise<CommandView[]>;
  cancel(commandId: string): Promise<CommandView>;
  report(
    deviceId: string,
    commandId: string,
    report: CommandReport,
  ): Promise<{ applied: boolean; command: CommandView }>;
}

export interface ConfigView {
  key: string;
  version: number;
  [field: string]: unknown;
}

export interface ConfigPort {
  set(deviceId: string, key: string, value: unknown, options: { expectedVersion?: number }): Promise<ConfigView>;
  delete(deviceId: string, key: string, options: { expectedVersion?: number }): Promise<unknown>;
  get(deviceId: string, key: string): Promise<ConfigView | null>;
  list(deviceId: string): Promise<ConfigView[]>;
  lagging(query: { key?: string; limit: number; after?: string }): Promise<Page<unknown>>;
  report(deviceId: string, report: ConfigReported): Promise<unknown>;
}

export interface DownstreamPort {
  commands: CommandsPort;
  config: ConfigPort;
}
