/**
 * The edge agent's Prometheus metrics, in a registry of their own (several agents can live in
 * one process, e.g. in tests).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class EdgeMetrics {
  readonly registry = new Registry();

  readonly readingsAccepted = new Counter({
    name: 'edge_readings_accepted_total',
    help: 'Sensor readings committed to libSQL (PUBACK sent)',
    registers: [this.registry],
  });

  readonly readingsRejected = new Counter({
    name: 'edge_readings_rejected_total',
    help: 'Sensor readings refused at the local listener (stored in rejected_readings)',
    registers: [this.registry],
  });

  readonly oversizePackets = new Counter({
    name: 'edge_sensor_oversize_packets_total',
    help: 'Sensor MQTT packets refused by their declared length before being read (the connection is closed)',
    registers: [this.registry],
  });

  readonly sensorConnectionsRefused = new Counter({
    name: 'edge_sensor_connections_refused_total',
    help: 'Sensor connections refused: no-credentials or bad-credentials (CONNACK 5 or 4), tls-handshake',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly batchAckLatency = new Histogram({
    name: 'edge_batch_ack_latency_seconds',
    help: 'Time from publishing a telemetry batch to applying its sync/ack',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly batchesTimedOut = new Counter({
    name: 'edge_batches_timed_out_total',
    help: 'Telemetry batches with no sync/ack in time (back to pending, sent again under the same id)',
    registers: [this.registry],
  });

  readonly pendingReadings: Gauge;

  readonly storageUsedBytes = new Gauge({
    name: 'edge_storage_used_bytes',
    help: 'Bytes the edge database uses: pages in use plus the WAL file (last storage check)',
    registers: [this.registry],
  });

  readonly storageCapacityBytes = new Gauge({
    name: 'edge_storage_capacity_bytes',
    help: 'Bytes the edge database may occupy: EDGE_MAX_DB_BYTES or what the filesystem has room for, whichever is less',
    registers: [this.registry],
  });

  readonly storageAccepting = new Gauge({
    name: 'edge_storage_accepting',
    help: '1 while the store accepts new readings, 0 while it is full and withholds PUBACKs (EDGE_OVERFLOW_POLICY=reject-new)',
    registers: [this.registry],
  });

  readonly readingsWithheld = new Gauge({
    name: 'edge_readings_withheld',
    help: 'Readings received but not committed (no PUBACK yet) because the store is full',
    registers: [this.registry],
  });

  readonly syncedPrunedForSpace = new Counter({
    name: 'edge_synced_readings_pruned_for_space_total',
    help: 'Synced readings deleted before their retention ended because storage was short',
    registers: [this.registry],
  });

  readonly droppedPendingReadings: Gauge;
  readonly droppedRejectedReadings: Gauge;

  /** G6: commands by the outcome the edge reached (terminal states, canceled included) */
  readonly commands = new Counter({
    name: 'edge_commands_total',
    help: 'Commands by outcome: executed, failed, rejected, expired, canceled (G6)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly downstreamRejected = new Counter({
    name: 'edge_downstream_rejected_total',
    help: 'Downstream or local messages refused, by reason: malformed-command, invalid-command, oversize-command, malformed-config, oversize-config, unexpected-local-result, malformed-local-result',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly configVersions = new Counter({
    name: 'edge_config_versions_total',
    help: 'Config versions handled, by status: applied or rejected',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  /** read at scrape time from the store, once the downstream side exists (setReportsAwaiting) */
  readonly reportsAwaiting: Gauge<'kind'>;
  #countReportsAwaiting: () => Promise<{ commands: number; config: number }> = () =>
    Promise.resolve({ commands: 0, config: 0 });

  /** G6: where the reports waiting for the control plane's confirmation are counted. */
  setReportsAwaiting(count: () => Promise<{ commands: number; config: number }>): void {
    this.#countReportsAwaiting = count;
  }

  /** `countPending` and `readCounters` are read at scrape time. */
  constructor(
    countPending: () => Promise<number>,
    readCounters: () => Promise<{ droppedPendingReadings: number; droppedRejectedReadings: number }> = () =>
      Promise.resolve({ droppedPendingReadings: 0, droppedRejectedReadings: 0 }),
  ) {
    this.droppedPendingReadings = new Gauge({
      name: 'edge_dropped_pending_readings',
      help: 'Pending readings dropped to make room (EDGE_OVERFLOW_POLICY=drop-oldest) since the database was created; never sent',
      registers: [this.registry],
      async collect() {
        this.set((await readCounters()).droppedPendingReadings);
      },
    });
    this.droppedRejectedReadings = new Gauge({
      name: 'edge_dropped_rejected_readings',
      help: 'Refused sensor payloads dropped from rejected_readings beyond its bounds since the database was created',
      registers: [this.registry],
      async collect() {
        this.set((await readCounters()).droppedRejectedReadings);
      },
    });
    const reportsAwaiting = () => this.#countReportsAwaiting();
    this.reportsAwaiting = new Gauge({
      name: 'edge_reports_awaiting_confirmation',
      help: 'Command and config reports sent (or to send) and not yet confirmed by the control plane (G6), by kind',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      async collect() {
        const counts = await reportsAwaiting();
        this.set({ kind: 'command' }, counts.commands);
        this.set({ kind: 'config' }, counts.config);
      },
    });
    this.pendingReadings = new Gauge({
      name: 'edge_readings_pending',
      help: 'Readings waiting to be sent to the control plane',
      registers: [this.registry],
      async collect() {
        this.set(await countPending());
      },
    });
  }
}
