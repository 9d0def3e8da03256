/**
 * One edge agent: the libSQL store, the local sensor listener with its group commit, and the
 * uplink to the cluster, wired together.
 *
 *   sensor --QoS 1--> listener --group commit--> libSQL --claim--> uplink --batch--> broker/bridge
 *                          ^ PUBACK after commit                     ^ synced only on sync/ack
 */
import { metricsRoute, startHttpEndpoint, type HttpEndpoint } from '../common/http-endpoint.js';
import { createLogger } from '../common/logger.js';
import { isDeviceId } from '../schemas/topics.js';
import type { TelemetryRecord } from '../schemas/messages.js';
import type { EdgeAgentConfig } from './agent-config.js';
import { GroupCommitWriter } from './ingest/group-commit.js';
import { startSensorListener, type SensorListener } from './ingest/sensor-listener.js';
import { DEFAULT_HISTORY_RETENTION, startHistoryPruner } from './history-pruner.js';
import { EdgeMetrics } from './metrics.js';
import { openTelemetryStore } from './store/telemetry-store.js';
import { Uplink } from './uplink/uplink.js';

export type { EdgeAgentConfig } from './agent-config.js';

export interface EdgeAgentStats {
  pending: number;
  syncing: number;
  synced: number;
  failed: number;
  rejectedReadings: number;
  inFlightBatches: number;
  connected: boolean;
}

export interface EdgeAgent {
  readonly deviceId: string;
  /** the port the sensor listener actually listens on */
  readonly sensorPort: number;
  /** the port of GET /metrics; undefined when config.metricsPort was not given */
  readonly metricsPort: number | undefined;
  readonly metrics: EdgeMetrics;
  stats(): Promise<EdgeAgentStats>;
  /**
   * Graceful stop: refuses new sensor connections and readings, lets every reading already
   * received commit and be acknowledged, stops the uplink (online:false), closes the database.
   * Idempotent: a second call returns the same promise.
   */
  close(): Promise<void>;
}

export async function startEdgeAgent(config: EdgeAgentConfig): Promise<EdgeAgent> {
  if (!isDeviceId(config.deviceId)) {
    throw new Error(`deviceId must be a lower-case UUID (the device certificate's CN), got '${config.deviceId}'`);
  }
  const logger = (config.logger ?? createLogger('edge-agent')).child({ deviceId: config.deviceId });
  const store = await openTelemetryStore({ url: config.dbUrl, deviceId: config.deviceId });
  const metrics = new EdgeMetrics(() => store.countPending());

  let uplink: Uplink;
  try {
    uplink = await Uplink.start({
      deviceId: config.deviceId,
      brokerUrl: config.brokerUrl,
      tls: config.tls,
      store,
      logger,
      metrics,
      ackTimeoutMs: config.ackTimeoutMs,
      maxInFlightBatches: config.maxInFlightBatches,
      syncIntervalMs: config.syncIntervalMs,
      sendLingerMs: config.sendLingerMs,
      reconnectPolicy: config.reconnectPolicy,
      reconnectRandom: config.reconnectRandom,
    });
  } catch (error) {
    await store.close();
    throw error;
  }

  const writer = new GroupCommitWriter<TelemetryRecord>({
    commit: (records) => store.insertReadings(records),
    maxRecordsPerCommit: config.maxRecordsPerCommit,
    onCommitted: (count) => uplink.notifyNewReadings(count),
  });

  let listener: SensorListener;
  try {
    listener = await startSensorListener({
      deviceId: config.deviceId,
      host: config.sensorHost,
      port: config.sensorPort,
      users: config.sensorUsers,
      tls: config.sensorTls,
      allowAnonymous: config.sensorAllowAnonymous,
      writer,
      store,
      logger,
      metrics,
    });
  } catch (error) {
    await uplink.close();
    await store.close();
    throw error;
  }
  let endpoint: HttpEndpoint | undefined;
  if (config.metricsPort !== undefined) {
    try {
      endpoint = await startHttpEndpoint({
        name: 'edge metrics endpoint',
        host: config.metricsHost ?? '127.0.0.1',
        port: config.metricsPort,
        logger,
        routes: { '/metrics': metricsRoute(metrics.registry) },
      });
    } catch (error) {
      await listener.close();
      await writer.close();
      await uplink.close();
      await store.close();
      throw error;
    }
  }
  const pruner = startHistoryPruner(store, { ...DEFAULT_HISTORY_RETENTION, ...config.historyRetention }, logger);
  logger.info(
    { sensorPort: listener.port, metricsPort: endpoint?.port, brokerUrl: config.brokerUrl },
    'edge agent started',
  );

  let closing: Promise<void> | null = null;
  async function close(): Promise<void> {
    await pruner.close();
    await listener.close();
    await writer.close();
    await uplink.close();
    await endpoint?.close();
    await store.close();
    logger.info('edge agent closed');
  }

  return {
    deviceId: config.deviceId,
    sensorPort: listener.port,
    metricsPort: endpoint?.port,
    metrics,
    async stats() {
      const [counts, rejectedReadings] = await Promise.all([store.countByStatus(), store.countRejectedReadings()]);
      return { ...counts, rejectedReadings, inFlightBatches: uplink.inFlightBatches, connected: uplink.connected };
    },
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
