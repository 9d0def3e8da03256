/**
 * One edge agent: the libSQL store, the local sensor listener with its group commit, and the
 * uplink to the cluster, wired together.
 *
 *   sensor --QoS 1--> listener --group commit--> libSQL --claim--> uplink --batch--> broker/bridge
 *                          ^ PUBACK after commit                     ^ synced only on sync/ack
 *
 * G6, the other direction: commands and config arrive on the uplink's session and go to
 * edge/downstream/downstream.ts (command_queue, device_config in the same libSQL file); built-in
 * commands and agent settings act on the uplink and the logger, other commands and config keys
 * go to local applications through the listener (local/commands/…, local/config/…).
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
import { openEdgeStores } from './store/edge-stores.js';
import { openWorkerEdgeStores } from './store/worker-store.js';
import { MAX_BATCH_RECORDS } from '../schemas/limits.js';
import { LiveAgentSettings, type AgentSettingValues } from './downstream/agent-settings.js';
import { Downstream } from './downstream/downstream.js';
import { liveLogLevel } from './log-level.js';
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
  const setLogLevel = liveLogLevel(logger);
  const maxDbBytes = config.maxDbBytes ?? DEFAULT_MAX_DB_BYTES;
  const storeOptions = {
    url: config.dbUrl,
    deviceId: config.deviceId,
    legacyClaimPlan: config.legacyClaimPlan ?? false,
    maxDbBytes,
    ...(config.rejectedReadings ? { rejectedReadings: config.rejectedReadings } : {}),
  };
  // SQLite off the event loop that answers the sensors (edge/store/worker-store.ts)
  const stores =
    config.storeThread === 'event-loop' ? await openEdgeStores(storeOptions) : await openWorkerEdgeStores(storeOptions);
  const store = stores.telemetry;
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

  // G6: the live agent settings drive the uplink (bound once it exists) and the loggers
  const lever: { uplink: Uplink | null } = { uplink: null };
  const settings = new LiveAgentSettings(
    {
      'agent.syncIntervalMs': config.syncIntervalMs ?? 30_000,
      'agent.batchMaxRecords': MAX_BATCH_RECORDS,
      'agent.logLevel': (logger.level as AgentSettingValues['agent.logLevel'] | undefined) ?? 'info',
    },
    {
      setSyncIntervalMs: (ms) => lever.uplink?.setSyncIntervalMs(ms),
      setBatchMaxRecords: (records) => lever.uplink?.setBatchMaxRecords(records),
      setLogLevel: (level) => setLogLevel(level),
    },
  );
  let downstream: Downstream;
  try {
    // G6: a command left executing by a crash is failed before anything can arrive
    downstream = await Downstream.open({
      deviceId: config.deviceId,
      store: stores.downstream,
      logger,
      metrics,
      settings,
      localCommandTimeoutMs: config.localCommandTimeoutMs,
      ...(config.reportResendMs !== undefined
        ? { resend: { baseMs: config.reportResendMs, maxMs: Math.max(config.reportResendMs, 300_000) } }
        : {}),
    });
  } catch (error) {
    await guard.close();
    await store.close();
    throw error;
  }
  metrics.setReportsAwaiting(() => stores.downstream.countUnconfirmedReports());

  let uplink: Uplink;
  try {
    uplink = await Uplink.start({
      downstream: {
        filters: () => downstream.filters(),
        onConnect: () => downstream.onConnect(),
        onSubscribed: (filter) => downstream.onSubscribed(filter),
        handleMessage: (topic, payload) => downstream.handleMessage(topic, payload),
      },
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
    await downstream.close();
    await guard.close();
    await store.close();
    throw error;
  }
  lever.uplink = uplink;

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
      onLocalCommandResult: (commandId, payload, clientId) =>
        downstream.handleLocalResult(commandId, payload, clientId),
      writer,
      store,
      logger,
      metrics,
    });
  } catch (error) {
    await downstream.close();
    await uplink.close();
    await guard.close();
    await store.close();
    throw error;
  }
  // G6: stored config re-applied, interrupted deliveries started, reports re-sent from now on
  try {
    await downstream.attach(
      {
        get connected() {
          return uplink.connected;
        },
        publish: (topic, payload) => uplink.publish(topic, payload),
        sendNow: () => uplink.sendNow(),
      },
      { publish: (topic, payload, retain) => listener.publishLocal(topic, payload, retain) },
    );
  } catch (error) {
    await downstream.close();
    await listener.close();
    await writer.close();
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
      await downstream.close();
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
    await downstream.close();
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
