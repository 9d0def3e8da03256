/**
 * Wire types of the MQTT topic contract (docs/contract.md); the topics themselves are in ./topics.ts.
 * Every payload is UTF-8 JSON so that mosquitto_sub and MQTT Explorer can read it.
 */

import type { LiveCommandStatus, ReportedCommandStatus } from './command-lifecycle.js';

/** What a sensor publishes on sensors/{sensorId}/{dataType} (or a bare JSON number). */
export interface SensorReadingInput {
  value: number;
  unit?: string;
  /** epoch milliseconds or ISO 8601 date-time */
  ts?: number | string;
  /** UUID; lets a sensor re-send (or correct) a reading idempotently */
  id?: string;
  metadata?: Record<string, unknown>;
}

/** One reading on devices/{id}/telemetry. The device id is the topic's, never the payload's. */
export interface TelemetryRecord {
  id: string;
  sensorId: string;
  dataType: string;
  /** ISO 8601 date-time with milliseconds, UTC */
  timestamp: string;
  value: number;
  unit?: string | null;
  metadata?: Record<string, unknown> | null;
  /** starts at 1; the edge increments it when a reading with the same id is corrected */
  version: number;
}

/** Payload of devices/{id}/telemetry: at most MAX_BATCH_RECORDS readings. */
export interface TelemetryBatch {
  batchId: string;
  records: TelemetryRecord[];
  /** readings still waiting on the device after this batch (informational, feeds sync_status) */
  pendingCount?: number;
  /**
   * G8: pending readings the device has dropped to make room since its database was created
   * (EDGE_OVERFLOW_POLICY=drop-oldest): a total, so a re-sent or reordered batch says nothing
   * wrong; omitted while 0. Stored in sync_status.dropped_records_count.
   */
  droppedCount?: number;
}

export interface RejectedRecord {
  id: string;
  reason: string;
}

/** Payload of devices/{id}/sync/ack, published by the bridge after the rows are committed. */
export interface SyncAck {
  /** null only when the batch could not be read at all (then `error` says why) */
  batchId: string | null;
  /** how many records of the batch are now stored (new, updated, or already present) */
  accepted: number;
  /** at most MAX_SYNC_ACK_REJECTIONS (schemas/limits.ts), ids and reasons clipped */
  rejected: RejectedRecord[];
  /**
   * how many records were rejected in all; present when `rejected` lists only the first of them.
   * The device cannot tell which of its other readings were among the unlisted ones, so it marks
   * none of them synced and sends them again (ingest is idempotent, G4; the next ack lists the rest).
   */
  rejectedCount?: number;
  /** how many records met a different stored version (each is written to conflict_log) */
  conflicts: number;
  error?: string;
  /**
   * G7: "retry later": the bridge stored nothing of the batch because it is over a bound on the
   * messages or bytes it holds (per device or in all). The device puts the batch back to pending
   * and sends it again no earlier than this many milliseconds; nothing is marked failed.
   */
  retryAfterMs?: number;
}

/**
 * Payload of devices/{id}/status (retained; the edge's will says online:false).
 *
 * `at` is the time the connection was attempted, the same in that connection's online:true and
 * in its will, so a consumer can order statuses even when a will arrives late (a crashed broker
 * node's wills fire seconds later, possibly after the device reconnected elsewhere): the later
 * `at` wins, and at an equal `at`, online:false wins. A clean shutdown publishes online:false
 * with the shutdown time.
 */
export interface DeviceStatus {
  online: boolean;
  at: string;
}

/**
 * Payload of control/revocations (retained; published by the bridge only, read by the broker
 * nodes only): every revoked client certificate serial (schemas/certificate-serial.ts form) at
 * `generatedAt`. Always the complete list, never a change, so the retained message alone tells a
 * broker node that starts (or reconnects to Redis) everything.
 */
export interface RevocationList {
  generatedAt: string;
  serials: string[];
}

/** Payload the edge publishes locally on sensors/{sensorId}/{dataType}/error for a rejected reading. */
export interface SensorReadingError {
  error: string;
  topic: string;
  /** the offending payload, truncated, as text */
  payload: string;
  at: string;
}

/**
 * Payload of devices/{id}/commands/{commandId} (retained; bridge -> edge). An empty payload
 * clears the topic: the command reached a terminal state (schemas/command-lifecycle.ts).
 */
export interface CommandMessage {
  commandId: string;
  /** schemas/limits.ts COMMAND_TYPE_PATTERN; built-in types in schemas/command-types.ts */
  type: string;
  payload: Record<string, unknown>;
  createdAt: string;
  expiresAt?: string;
  /** the control plane's committed state (a live one) */
  status: LiveCommandStatus;
}

/** Payload of devices/{id}/commands/{commandId}/result (edge -> bridge). */
export interface CommandReport {
  status: ReportedCommandStatus;
  /** when the edge reached this state */
  at: string;
  result?: unknown;
  error?: string;
}

/** Payload of local/commands/{commandId}/result (local application -> edge agent, on the edge's local listener). */
export interface LocalCommandResult {
  status: 'executed' | 'failed';
  result?: unknown;
  error?: string;
}

/** Payload of local/config/{key} (edge agent -> local applications, retained). */
export interface LocalConfig {
  key: string;
  value: unknown;
  version: number;
}

/** Payload of devices/{id}/config/{key} (retained; bridge -> edge). Empty payload: key deleted. */
export interface ConfigDesired {
  key: string;
  value: unknown;
  version: number;
  /** newest version the device reported for this key, as committed in the control plane */
  reportedVersion?: number;
}

/** Payload of devices/{id}/config/reported (edge -> bridge). */
export interface ConfigReported {
  key: string;
  version: number;
  status: 'applied' | 'rejected';
  error?: string;
  at?: string;
}

/** Agent settings (config keys agent.*; schemas/agent-settings.schema.json). */
export interface AgentSettings {
  'agent.syncIntervalMs'?: number;
  'agent.batchMaxRecords'?: number;
  'agent.logLevel'?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}
export type AgentSettingKey = keyof AgentSettings;
