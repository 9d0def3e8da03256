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
  };
}
