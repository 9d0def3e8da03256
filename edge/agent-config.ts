/**
 * Configuration of one edge agent. Only the identity, the database and the broker are required;
 * everything else has defaults (30 s sync interval and ack timeout, 4 batches
 * in flight, 1 s → 60 s reconnect backoff).
 */
import type { ReconnectPolicy } from '../common/retry-policy.js';
import type { Logger } from '../common/logger.js';
import type { HistoryRetention } from './history-pruner.js';
import type { OverflowPolicy } from './store/storage-budget.js';
import type { RejectedReadingsLimits } from './store/telemetry-store.js';
import type { TlsFiles } from '../common/tls-files.js';
import type { SensorTlsFiles } from './ingest/sensor-listener.js';
import type { SensorUser } from './ingest/sensor-users.js';

export interface EdgeAgentConfig {
  /** UUID; the CN of the device certificate and the MQTT client id */
  deviceId: string;
  /** libSQL file: URL, e.g. file:.data/edge-<id>.db */
  dbUrl: string;
  /** sensor listener address; default 127.0.0.1 */
  sensorHost?: string;
  /** sensor listener port; default 1883; 0 picks a free port (reported as sensorPort) */
  sensorPort?: number;
  /** sensor users (edge/ingest/sensor-users.ts); when given, every sensor must log in as one of them */
  sensorUsers?: readonly SensorUser[];
  /** the sensor listener speaks TLS; with a CA, sensors need a client certificate it signed */
  sensorTls?: SensorTlsFiles;
  /** accept anonymous sensors on a non-loopback sensorHost (without it the agent refuses to start there) */
  sensorAllowAnonymous?: boolean;
  /** cluster broker, mqtts://host:port (mqtt:// only for tests) */
  brokerUrl: string;
  /** client certificate, key and CA for mutual TLS */
  tls?: TlsFiles;
  /** how long a telemetry batch waits for its sync/ack before it goes back to pending (re-sent under the same id); default 30 000 */
  ackTimeoutMs?: number;
  /** default 4 */
  maxInFlightBatches?: number;
  /** periodic send attempt; default 30 000 */
  syncIntervalMs?: number;
  /** wait after a commit before sending, to gather a fuller batch; default 20 */
  sendLingerMs?: number;
  /** most readings in one group commit; default 2000 */
  maxRecordsPerCommit?: number;
  /** uplink reconnect backoff; default DEFAULT_RECONNECT_POLICY (edge/uplink/reconnect-scheduler.ts) */
  reconnectPolicy?: ReconnectPolicy;
  /** the reconnect jitter's randomness, [0, 1); default Math.random (tests inject their own) */
  reconnectRandom?: () => number;
  /** how long local history is kept (see edge/history-pruner.ts); defaults: synced 72 h, diagnostics 30 days, hourly */
  historyRetention?: Partial<HistoryRetention>;
  /** G8: most bytes the database and its WAL may take; default 1 GiB (EDGE_MAX_DB_BYTES) */
  maxDbBytes?: number;
  /** G8: what happens when full, after pruning synced readings; default 'reject-new' */
  overflowPolicy?: OverflowPolicy;
  /** how often storage is checked besides after commits; default 500 ms */
  storageCheckIntervalMs?: number;
  /** G8: bounds of rejected_readings; default 1000 payloads, 2 MiB */
  rejectedReadings?: RejectedReadingsLimits;
  /** serve GET /metrics on this port (0 picks one, see EdgeAgent.metricsPort); no HTTP endpoint when omitted */
  metricsPort?: number;
  /** default 127.0.0.1: the metrics stay on the device unless asked otherwise */
  metricsHost?: string;
  /**
   * where SQLite runs: 'worker' (default), a worker thread of its own, or 'event-loop', the
   * agent's event loop as before (kept for scripts/bench-drain.ts's before/after comparison)
   */
  storeThread?: 'worker' | 'event-loop';
  /** the released-batch lookup without its pinned index: scripts/bench-drain.ts's "before" only */
  legacyClaimPlan?: boolean;
  /** G6: how long a local application has to answer a command (unless payload.timeoutMs says otherwise); default 30 000 */
  localCommandTimeoutMs?: number;
  /** G6: first wait before an unconfirmed command or config report is sent again (doubling up to 5 min); default 10 000 */
  reportResendMs?: number;
  /** default: a pino logger named edge-agent */
  logger?: Logger;
}
