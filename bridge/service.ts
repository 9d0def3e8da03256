/**
 * The bridge service: migrate the database, ingest devices/+/telemetry into it, confirm with
 * sync/ack, run the PostgreSQL retention job, publish the revocation list to the broker nodes
 * (./revocation-publisher.ts), run the downstream side (G6, ./downstream/: commands and config,
 * the services the REST API calls, the devices' reports, presence), serve /metrics and /healthz,
 * and the REST API over mutual TLS (./api/, when API_PORT is set).
 */
import { healthRoute, metricsRoute, startHttpEndpoint, type HttpEndpoint } from '../common/http-endpoint.js';
import { createLogger, type Logger } from '../common/logger.js';
import type { BridgeConfig } from './config.js';
import { closeDatabase, openDatabase } from './db/connection.js';
import type { SqlDialect } from './db/dialect.js';
import { migrate } from './db/migrate.js';
import { startRetentionScheduler } from './db/retention.js';
import type { TransactionRetryOptions } from './db/transaction-retry.js';
import { IngestPipeline } from './ingest/ingest-pipeline.js';
import { startParsePool } from './ingest/parse-pool.js';
import { writeTelemetryBatch } from './ingest/telemetry-writer.js';
import { startApiServer, type ApiServer } from './api/server.js';
import { createBridgeMetrics, type BridgeMetrics } from './metrics.js';
import { createBridgeMqttClient } from './mqtt/bridge-mqtt-client.js';
import { isDownstreamTopic, startDownstream, type Downstream } from './downstream/downstream.js';
import { startRevocationPublisher, type RevocationPublisher } from './revocation-publisher.js';

export type { BridgeConfig } from './config.js';

export interface RunningBridge {
  dialect: SqlDialect;
  metrics: BridgeMetrics;
  /** the /metrics and /healthz port, null without an HTTP server */
  httpPort: number | null;
  /** G6: commands and config (bridge/downstream/): the services the REST API calls */
  downstream: Downstream;
  /** the REST API (./api/), null unless config.api is set */
  api: { url: string; port: number; refreshRevocations(): Promise<void> } | null;
  /** the same checks as /healthz */
  health(): Promise<{ database: boolean; broker: boolean }>;
  /**
   * Finishes the batch in progress, then disconnects; unacknowledged messages stay with the broker.
   * Idempotent: a second call returns the same promise.
   */
  close(): Promise<void>;
}

export async function startBridge(config: BridgeConfig, options: { logger?: Logger } = {}): Promise<RunningBridge> {
  const logger = options.logger ?? createLogger('bridge', { clientId: config.clientId });
  const metrics = createBridgeMetrics({ defaultMetrics: true });
  const db = openDatabase({
    connectionString: config.databaseUrl,
    applicationName: config.clientId,
    poolSize: config.dbPoolSize,
    queryTimeoutMs: config.dbQueryTimeoutMs,
    onIdleConnectionError: (error) => logger.warn({ err: error }, 'idle database connection lost'),
  });
  const retry: TransactionRetryOptions = {
    onRetry: (event) => {
      metrics.transactionRetries.inc({ transaction: event.label });
      // PostgreSQL names the reason ("Canceled on identification as a pivot, during write.") in detail
      const { code, message, detail } = event.error as { code?: unknown; message?: unknown; detail?: unknown };
      logger.debug(
        { transaction: event.label, retry: event.retry, delayMs: event.delayMs, code, message, detail },
        'transaction retried',
      );
    },
  };

  let dialect: SqlDialect;
  try {
    ({ dialect } = await migrate(db, { logger }));
  } catch (error) {
    await closeDatabase(db);
    throw error;
  }

  const mqtt = createBridgeMqttClient({
    url: config.brokerUrl,
    clientId: config.clientId,
    tls: config.tls,
    logger,
    // G7: the pipeline holds at most maxInFlight messages and answers the rest "retry later", so
    // this pause of reading (which would hold every device behind a flood) is only a backstop
    maxUncommitted: config.maxInFlight + 1,
    onInFlightChange: (count) => metrics.messagesInFlight.set(count),
    // G6: reports, config reports and presence go to the downstream side, never into telemetry batches
    onMessage: (delivery) =>
      isDownstreamTopic(delivery.topic) ? downstream.accept(delivery) : pipeline.accept(delivery),
  });
  // --- G6 downstream (bridge/downstream/) ---
  const downstream = startDownstream({
    db,
    logger,
    metrics,
    settings: config.downstream,
    publish: (topic, payload) => mqtt.publishRetained(topic, payload),
    subscriber: { subscribe: (filter) => mqtt.subscribe(filter), unsubscribe: (filter) => mqtt.unsubscribe(filter) },
    retry,
  });
  mqtt.onSessionLost(() => downstream.reconcileSoon());
  // --- end G6 ---
  // G7: large messages are parsed on worker threads (closed after the pipeline, which waits for them)
  const parsePool = config.parseWorkers > 0 ? startParsePool({ workers: config.parseWorkers, logger }) : null;
  const pipeline = new IngestPipeline({
    write: (messages) => writeTelemetryBatch(db, messages, { retry }),
    publishAck: (deviceId, ack) => mqtt.publishAck(deviceId, ack),
    logger,
    metrics,
    limits: config.batch,
    // G7: fairness and bounded memory (bridge/ingest/fair-scheduler.ts)
    holdLimits: {
      maxMessages: config.maxInFlight,
      maxBytes: config.maxInFlightBytes,
      maxDeviceMessages: config.deviceMaxInFlight,
      maxDeviceBytes: config.deviceMaxInFlightBytes,
    },
    writers: config.batchWriters,
    retryAfterMs: config.retryLaterMs,
    ...(parsePool === null ? {} : { parseLarge: (topic: string, payload: Buffer) => parsePool.parse(topic, payload) }),
  });
  const retention = startRetentionScheduler(db, {
    dialect,
    retentionDays: config.retentionDays,
    chunkSize: config.retentionChunkSize,
    intervalMs: config.retentionIntervalMs,
    logger,
    retry,
  });
  const health = async (): Promise<{ database: boolean; broker: boolean }> => ({
    database: await db.one('SELECT 1').then(
      () => true,
      () => false,
    ),
    broker: mqtt.isConnected(),
  });

  let http: HttpEndpoint | null = null;
  let revocations: RevocationPublisher | undefined;
  let api: ApiServer | null = null;
  try {
    await mqtt.start();
    // G9: after start(), so that the first list goes out on the first connection
    const publisher = (revocations = startRevocationPublisher({
      db,
      publish: (payload) => mqtt.publishRevocationList(payload),
      logger,
      pollIntervalMs: config.revocationPollMs,
      retry,
      onPublished: (count) => {
        metrics.revocationListsPublished.inc();
        metrics.revokedCertificates.set(count);
      },
    }));
    mqtt.onConnect(() => publisher.republish());
    downstream.startJobs(); // G6: after start(), so the first reconciliation subscribes at once
    if (config.http) {
      http = await startHttpEndpoint({
        name: 'bridge metrics endpoint',
        ...config.http,
        logger,
        routes: {
          '/metrics': metricsRoute(metrics.registry),
          '/healthz': healthRoute({
            database: async () => (await health()).database,
            broker: () => mqtt.isConnected(),
          }),
        },
      });
    }
    // ---- REST API (./api/) ----
    if (config.api) {
      api = await startApiServer({
        ...config.api,
        db,
        logger,
        metrics,
        ingest: (message) => pipeline.accept(message),
        downstream,
        revocationPollMs: config.revocationPollMs,
      });
    }
  } catch (error) {
    await api?.close();
    await http?.close();
    await revocations?.close();
    await retention.close();
    await downstream.close();
    await pipeline.close();
    await parsePool?.close();
    await mqtt.close();
    await closeDatabase(db);
    throw error;
  }
  logger.info(
    { dialect, httpPort: http?.port ?? null, apiPort: api?.port ?? null, batch: config.batch },
    'bridge started',
  );

  const close = async (): Promise<void> => {
    await api?.close(); // first: no new HTTP telemetry while the pipeline drains
    await revocations?.close();
    await retention.close();
    await downstream.close();
    await pipeline.close();
    await parsePool?.close();
    await mqtt.close();
    await http?.close();
    await closeDatabase(db);
    logger.info('bridge closed');
  };
  let closing: Promise<void> | undefined;
  return {
    dialect,
    metrics,
    downstream,
    httpPort: http?.port ?? null,
    api: apiHandle(api),
    health,
    close: () => (closing ??= close()),
  };
}

function apiHandle(api: ApiServer | null): RunningBridge['api'] {
  if (api === null) return null;
  return { url: api.url, port: api.port, refreshRevocations: () => api.revocations.refresh() };
}
