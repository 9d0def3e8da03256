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
import { isStorageFullError, StorageGuard } from './storage-guard.js';
import { DEFAULT_MAX_DB_BYTES } from './store/storage-budget.js';
import { openTelemetryStore } from './store/telemetry-store.js';
import { openWorkerTelemetryStore } from './store/worker-store.js';
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
  /** G8: the last storage check */
  storage: {
    accepting: boolean;
    usedBytes: number;
    capacityBytes: number;
    /** readings received but waiting for space (no PUBACK yet) */
    withheld: number;
    /** pending readings dropped to make room since the database was created (drop-oldest) */
    droppedPending: number;
  };
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
  const maxDbBytes = config.maxDbBytes ?? DEFAULT_MAX_DB_BYTES;
  const storeOptions = {
    url: config.dbUrl,
    deviceId: config.deviceId,
    legacyClaimPlan: config.legacyClaimPlan ?? false,
    maxDbBytes,
    ...(config.rejectedReadings ? { rejectedReadings: config.rejectedReadings } : {}),
  };
  // SQLite off the event loop that answers the sensors (edge/store/worker-store.ts)
  const store =
    config.storeThread === 'event-loop'
      ? await openTelemetryStore(storeOptions)
      : await openWorkerTelemetryStore(storeOptions);
  const metrics = new EdgeMetrics(
    () => store.countPending(),
    () => store.readCounters(),
  );

  /** readings waiting for space, once the group commit exists */
  const withheld = { count: (): number => 0 };
  let guard: StorageGuard;
  try {
    // G8: checked once before the first reading; then after commits and every interval
    guard = await StorageGuard.start({
      store,
      maxDbBytes,
      policy: config.overflowPolicy ?? 'reject-new',
      logger,
      metrics,
      ...(config.storageCheckIntervalMs !== undefined ? { checkIntervalMs: config.storageCheckIntervalMs } : {}),
      waitingReadings: () => withheld.count(),
    });
  } catch (error) {
    await store.close();
    throw error;
  }

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
      droppedCount: () => guard.droppedTotal,
      storageShort: () => guard.short,
      reconnectRandom: config.reconnectRandom,
    });
  } catch (error) {
    await guard.close();
    await store.close();
    throw error;
  }

  const writer = new GroupCommitWriter<TelemetryRecord>({
    commit: (records) => store.insertReadings(records),
    maxRecordsPerCommit: config.maxRecordsPerCommit,
    onCommitted: (count) => {
      uplink.notifyNewReadings(count);
      guard.noteCommitted();
    },
    // G8 + G1: a full store withholds PUBACKs (the readings wait) instead of failing them
    admission: guard,
    isStorageFull: isStorageFullError,
    onStorageFull: (error) => guard.noteStorageFull(error),
  });
  withheld.count = () => (writer.waitingForSpace ? writer.queued : 0);

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
    await guard.close();
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
      await guard.close();
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
    // readings waiting for space are refused first, or the listener would wait for them forever
    if (writer.waitingForSpace) void writer.close();
    await listener.close();
    await writer.close();
    await uplink.close();
    await guard.close();
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
      const last = guard.lastAssessment;
      return {
        ...counts,
        rejectedReadings,
        inFlightBatches: uplink.inFlightBatches,
        connected: uplink.connected,
        storage: {
          accepting: guard.open,
          usedBytes: last?.usedBytes ?? 0,
          capacityBytes: last?.capacityBytes ?? 0,
          withheld: withheld.count(),
          droppedPending: guard.droppedTotal,
        },
      };
    },
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
