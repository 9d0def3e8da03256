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

  /** `countPending` is read at scrape time. */
  constructor(countPending: () => Promise<number>) {
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
