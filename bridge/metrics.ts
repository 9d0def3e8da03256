/** The bridge's Prometheus metrics, in a registry of its own (one per running bridge). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface BridgeMetrics {
  registry: Registry;
  recordsIngested: Counter;
  recordsRejected: Counter;
  conflicts: Counter;
  batchCommitSeconds: Histogram;
  batchesFailed: Counter;
  transactionRetries: Counter<'transaction'>;
  messagesInFlight: Gauge;
  revocationListsPublished: Counter;
  revokedCertificates: Gauge;
  // G7: fairness and bounded memory (bridge/ingest/fair-scheduler.ts)
  messagesHeld: Gauge;
  messageBytesHeld: Gauge;
  queueDepth: Gauge;
  messagesRefused: Counter<'reason'>;
  // G6: commands and config (bridge/downstream/)
  commands: Gauge<'status' | 'type'>;
  oldestLiveCommandSeconds: Gauge;
  configKeysLagging: Gauge;
  downstreamReports: Counter<'kind' | 'outcome'>;
  downstreamReportsRejected: Counter<'kind' | 'reason'>;
  retainedPublished: Counter<'kind' | 'action'>;
  commandsExpired: Counter;
  reconciliations: Counter<'outcome'>;
  reconcileRepairs: Counter<'kind' | 'action'>;
  // ---- REST API (bridge/api/) ----
  httpRequests: Counter<'route' | 'method' | 'status'>;
  httpRequestSeconds: Histogram<'route' | 'method'>;
}

export function createBridgeMetrics(options: { defaultMetrics?: boolean } = {}): BridgeMetrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    recordsIngested: new Counter({
      name: 'bridge_telemetry_records_ingested_total',
      help: 'Telemetry records accepted (stored, updated, already present, or resolved as a conflict)',
      registers,
    }),
    recordsRejected: new Counter({
      name: 'bridge_telemetry_records_rejected_total',
      help: 'Telemetry records rejected (invalid, unreadable batch, or owned by another device)',
      registers,
    }),
    conflicts: new Counter({
      name: 'bridge_telemetry_conflicts_total',
      help: 'Telemetry records that met a different stored version (written to conflict_log)',
      registers,
    }),
    batchCommitSeconds: new Histogram({
      name: 'bridge_telemetry_batch_commit_seconds',
      help: 'Time to write and commit one database batch, retries included',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    batchesFailed: new Counter({
      name: 'bridge_telemetry_batches_failed_total',
      help: 'Database batches that failed after retries (their messages stay unacknowledged)',
      registers,
    }),
    transactionRetries: new Counter({
      name: 'bridge_transaction_retries_total',
      help: 'Transactions re-run after a serialization failure (SQLSTATE 40001/40P01)',
      labelNames: ['transaction'],
      registers,
    }),
    messagesInFlight: new Gauge({
      name: 'bridge_messages_in_flight',
      help: 'MQTT messages received but not yet acknowledged to the broker',
      registers,
    }),
    revocationListsPublished: new Counter({
      name: 'bridge_revocation_lists_published_total',
      help: 'Revocation lists published to the broker nodes on control/revocations',
      registers,
    }),
    revokedCertificates: new Gauge({
      name: 'bridge_revoked_certificates',
      help: 'Certificates in the revocation list the bridge last published',
      registers,
    }),
    // G7: fairness and bounded memory (bridge/ingest/fair-scheduler.ts)
    messagesHeld: new Gauge({
      name: 'bridge_messages_held',
      help: 'Telemetry messages held for the database (queued or being written); at most MAX_IN_FLIGHT',
      registers,
    }),
    messageBytesHeld: new Gauge({
      name: 'bridge_message_bytes_held',
      help: 'Payload bytes of the telemetry messages held; at most MAX_IN_FLIGHT_BYTES',
      registers,
    }),
    queueDepth: new Gauge({
      name: 'bridge_queue_depth',
      help: 'Telemetry messages waiting in the per-device queues for a database batch',
      registers,
    }),
    messagesRefused: new Counter({
      name: 'bridge_messages_refused_total',
      help: 'Telemetry messages answered "retry later" (retryAfterMs) and not stored, by the bound they were over',
      labelNames: ['reason'],
      registers,
    }),
    // G6: commands and config (bridge/downstream/)
    commands: new Gauge({
      name: 'bridge_commands',
      help: 'Commands in the database by status and type (refreshed every 15 s)',
      labelNames: ['status', 'type'],
      registers,
    }),
    oldestLiveCommandSeconds: new Gauge({
      name: 'bridge_command_oldest_live_age_seconds',
      help: 'Age of the oldest non-terminal (pending, delivered, executing) command, 0 when there is none',
      registers,
    }),
    configKeysLagging: new Gauge({
      name: 'bridge_config_keys_lagging',
      help: 'Config keys whose current version the device has not applied (not reported, older, or rejected)',
      registers,
    }),
    downstreamReports: new Counter({
      name: 'bridge_downstream_reports_total',
      help: 'Command results, config reports and device statuses recorded (applied) or already known (duplicate, late, older)',
      labelNames: ['kind', 'outcome'],
      registers,
    }),
    downstreamReportsRejected: new Counter({
      name: 'bridge_downstream_reports_rejected_total',
      help: 'Command results, config reports and device statuses refused (invalid payload, unknown command or key, version ahead of the desired one)',
      labelNames: ['kind', 'reason'],
      registers,
    }),
    retainedPublished: new Counter({
      name: 'bridge_downstream_retained_published_total',
      help: 'Retained command and config messages published (publish) or cleared (clear)',
      labelNames: ['kind', 'action'],
      registers,
    }),
    commandsExpired: new Counter({
      name: 'bridge_commands_expired_total',
      help: 'Commands the expiry sweep expired (not started by expires_at)',
      registers,
    }),
    reconciliations: new Counter({
      name: 'bridge_downstream_reconciliations_total',
      help: 'Reconciliations of the retained command/config topics with the database, by outcome (ok, failed)',
      labelNames: ['outcome'],
      registers,
    }),
    reconcileRepairs: new Counter({
      name: 'bridge_downstream_reconcile_repairs_total',
      help: 'Retained topics a reconciliation published (missing or different) or cleared (no longer live in the database)',
      labelNames: ['kind', 'action'],
      registers,
    }),
    // ---- REST API (bridge/api/server.ts): every request, refused ones included ----
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: "REST API requests by route pattern (or 'unmatched'), method and status",
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    httpRequestSeconds: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'REST API request latency by route pattern and method, from the request to the end of the response',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
}
